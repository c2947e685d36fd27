"""Each lesson shows at least one core routine written out in plain PyTorch next to the library
call it mirrors (a code cell tagged ``written-out`` that defines one function). This test takes
that cell's source from the notebook, runs it in a fresh namespace, and checks the function
agrees with the library on seeded inputs — so the notebook text cannot drift from the code.
"""

import ast
import math
from pathlib import Path

import nbformat
import pytest
import torch

LESSONS = Path(__file__).resolve().parent.parent / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("*.ipynb"))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _lighting(fn):
    from viddiff_mini.analysis.consistency import lighting_consistency
    v = torch.rand(3, 3, 7, 8, 8, generator=_gen()) * 2 - 1
    drift, jitter = fn(v)
    lib = lighting_consistency(v)
    assert torch.allclose(drift, lib["drift"]) and torch.allclose(jitter, lib["jitter"])


def _full3d(fn):
    from viddiff_mini.analysis.complexity import conv3d_cost
    for shape in [(3, 5, 4, 6, 7), (16, 32, 8, 16, 16)]:
        lib = conv3d_cost("full3d", *shape)
        assert fn(*shape) == (lib.params, lib.flops)


def _accel(fn):
    from viddiff_mini.analysis.motion import temporal_acceleration_energy
    v = torch.randn(2, 3, 6, 5, 5, generator=_gen())
    assert torch.allclose(fn(v), temporal_acceleration_energy(v), atol=1e-6)


def _frechet(fn):
    from viddiff_mini.metrics.fvd import frechet_distance
    g = _gen()
    a, b = (torch.randn(6, 6, generator=g, dtype=torch.float64) for _ in range(2))
    m1, m2 = (torch.randn(6, generator=g, dtype=torch.float64) for _ in range(2))
    assert math.isclose(fn(m1, a @ a.T, m2, b @ b.T), frechet_distance(m1, a @ a.T, m2, b @ b.T),
                        rel_tol=1e-9, abs_tol=1e-9)


def _keyframe(fn):
    from viddiff_mini.nn.hierarchy import keyframe_cost
    for args in [(16, 4, 256, 64), (32, 8, 64, 32)]:
        lib = keyframe_cost(*args)
        assert fn(*args) == (lib["direct_flops"], lib["hierarchical_flops"])


def _conv2plus1d(fn):
    from viddiff_mini.nn.conv3d import build_conv
    torch.manual_seed(0)
    layer = build_conv("2plus1d", 4, 6)
    x = torch.randn(2, 4, 5, 8, 8, generator=_gen())
    with torch.no_grad():
        assert torch.allclose(fn(layer, x), layer(x), atol=1e-5)


def _attention(fn):
    import torch.nn.functional as F
    q, k, v = (torch.randn(2, 3, 10, 8, generator=_gen(i)) for i in range(3))
    assert torch.allclose(fn(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-5)


def _shift(fn):
    from viddiff_mini.nn.propagation import build_temporal
    layer = build_temporal("shift", 16)
    x = torch.randn(2, 16, 6, 3, 3, generator=_gen())
    assert torch.equal(fn(x, layer.fold), layer(x))


def _patch(fn):
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 8, (2, 4, 4), stride=(2, 4, 4))
    x = torch.randn(2, 3, 4, 16, 16, generator=_gen())
    with torch.no_grad():
        assert torch.allclose(fn(conv, x), conv(x), atol=1e-5)


def _cfg(fn):
    from viddiff_mini.diffusion.guidance import cfg_predict

    def toy(x, t, c):
        keep = c.get("label_keep", torch.ones(len(x), dtype=torch.bool)).float().view(-1, 1, 1, 1, 1)
        return x * (1 + keep) + c["label"].float().view(-1, 1, 1, 1, 1) * keep
    x = torch.randn(2, 3, 4, 8, 8, generator=_gen())
    cond = {"label": torch.tensor([1, 2])}
    for w in (0.0, 1.0, 3.5):
        assert torch.allclose(fn(toy, x, torch.zeros(2), cond, w),
                              cfg_predict(toy, x, torch.zeros(2), cond, w), atol=1e-5)


def _ddim(fn):
    from viddiff_mini.diffusion.samplers import ddim_step, make_grid
    from viddiff_mini.diffusion.schedules import get_schedule
    grid = make_grid(get_schedule("cosine"), 8)
    g = _gen()
    for i in range(len(grid) - 2):
        p_t, p_s = grid[i + 1], grid[i + 2]
        x_t, eps = torch.randn(1, 3, 2, 4, 4, generator=g), torch.randn(1, 3, 2, 4, 4, generator=g)
        x0 = (x_t - p_t.sigma * eps) / p_t.alpha
        got = fn(x_t, eps, p_t.alpha, p_t.sigma, p_s.alpha, p_s.sigma)
        assert torch.allclose(got, ddim_step(x0, eps, p_t, p_s), atol=1e-5)


def _traj_error(fn):
    from viddiff_mini.control.trajectory import trajectory_error
    req = torch.randn(2, 9, 2, generator=_gen()) * 10
    meas = req + torch.randn(2, 9, 2, generator=_gen(1))
    meas[0, 3] = float("nan")
    assert math.isclose(fn(req, meas), trajectory_error(req, meas), rel_tol=1e-6)


def _accel_penalty(fn):
    from viddiff_mini.control.physics import constant_accel_penalty
    tr = torch.cumsum(torch.cumsum(torch.randn(3, 12, 2, generator=_gen()), 1), 1)
    for g in (0.0, 0.5, 2.0):
        assert torch.allclose(fn(tr, g), constant_accel_penalty(tr, g=g), atol=1e-6)


CASES = {
    "lighting_written_out": _lighting,
    "full3d_cost_written_out": _full3d,
    "acceleration_energy_written_out": _accel,
    "frechet_written_out": _frechet,
    "keyframe_cost_written_out": _keyframe,
    "conv2plus1d_written_out": _conv2plus1d,
    "attention_written_out": _attention,
    "temporal_shift_written_out": _shift,
    "patch_embed_written_out": _patch,
    "cfg_written_out": _cfg,
    "ddim_step_written_out": _ddim,
    "trajectory_error_written_out": _traj_error,
    "accel_penalty_written_out": _accel_penalty,
}


def _written_out_cells(path):
    nb = nbformat.read(str(path), as_version=4)
    return [c for c in nb.cells if c.cell_type == "code" and "written-out" in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_written_out_routine_agrees_with_the_library(path):
    cells = _written_out_cells(path)
    assert cells, f"{path.name}: no cell tagged 'written-out'"
    for cell in cells:
        tree = ast.parse(cell.source)
        fns = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        assert len(fns) == 1, f"{path.name}: a written-out cell defines exactly one function"
        assert fns[0] in CASES, f"{path.name}: no comparison for {fns[0]} in this test"
        namespace = {}
        exec(compile(cell.source, f"{path.name}:written-out", "exec"), namespace)  # noqa: S102
        CASES[fns[0]](namespace[fns[0]])
