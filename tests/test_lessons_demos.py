"""The library helpers behind the lessons' measured demos: occlusion order (11.1.1), temporal
priors (11.1.5), the diffusion classifier (11.1.5 box), the scaling sweep (11.2.5) and the
stored generator samples the notebooks show."""

import math

import pytest
import torch

from viddiff_mini.analysis.diffusion_classifier import diffusion_classify
from viddiff_mini.analysis.occlusion import amodal_masks, occlusion_order, paint_in_front
from viddiff_mini.analysis.priors import (
    TemporalConv,
    autocorrelation,
    dominant_period,
    frame_dependence,
    future_leak,
)
from viddiff_mini.analysis.scaling import count_train_flops, fit_power_law


# ----------------------------------------------------------------------- occlusion order
@pytest.fixture(scope="module")
def occlude_clips():
    from viddiff_mini.data import synthetic as S
    names = [n for n in S.CLASS_NAMES if n.startswith("Occlude")]
    return S.render_batch([S.find_clip(n, split="test") for n in names], frames=12, size=32,
                          truth=True)


def test_amodal_mask_contains_the_visible_mask(occlude_clips):
    m, tr = occlude_clips["masks"], occlude_clips["trajectories"]
    amodal = amodal_masks(m, tr, 0)
    assert amodal.shape == (m.shape[0], *m.shape[2:])
    visible = m[:, 0]
    assert (visible & ~amodal).sum() <= 0.05 * visible.sum()     # rounding at the edges only
    assert (amodal & m[:, 1]).any()                                # it does pass behind


def test_front_wins_on_real_clips_and_loses_when_the_order_is_swapped(occlude_clips):
    geo = (occlude_clips["masks"], occlude_clips["trajectories"])
    real = occlusion_order(occlude_clips["video"], *geo)
    assert real["frames"] > 0 and real["front_wins"] == 1.0
    swapped = occlusion_order(paint_in_front(occlude_clips["video"], *geo, alpha=1.0), *geo)
    assert swapped["front_wins"] == 0.0
    ghost = occlusion_order(paint_in_front(occlude_clips["video"], *geo, alpha=0.5), *geo)
    assert 0.0 <= float(ghost["front_share"].nanmean()) < float(real["front_share"].nanmean())


def test_occlusion_order_rejects_bad_shapes(occlude_clips):
    with pytest.raises(ValueError, match="video"):
        occlusion_order(occlude_clips["video"][:, :1], occlude_clips["masks"],
                        occlude_clips["trajectories"])


# ----------------------------------------------------------------------- temporal priors
def test_autocorrelation_finds_the_period_of_a_sine():
    t = torch.arange(40.0)
    x = torch.stack([torch.sin(2 * math.pi * t / p) for p in (5, 8)])
    ac = autocorrelation(x, 10)
    assert torch.allclose(ac[:, 0], torch.ones(2, dtype=ac.dtype))
    period, peak = dominant_period(x, min_lag=2, max_lag=10)
    assert period.tolist() == [5, 8] and (peak > 0.99).all()
    with pytest.raises(ValueError, match="max_lag"):
        autocorrelation(x, 39)


def test_causal_conv_never_sees_the_future_and_symmetric_does():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 9, 3, 3)
    causal = torch.nn.Sequential(*[TemporalConv(2, 3, causal=True) for _ in range(2)])
    sym = torch.nn.Sequential(*[TemporalConv(2, 3) for _ in range(2)])
    dep_c, dep_s = frame_dependence(causal, x), frame_dependence(sym, x)
    assert dep_c.shape == (9, 9) and future_leak(dep_c) == 0.0
    assert torch.equal(dep_c > 1e-6, torch.tril(torch.ones(9, 9, dtype=torch.bool))
                       & ~torch.tril(torch.ones(9, 9, dtype=torch.bool), -5))
    assert future_leak(dep_s) > 0.3
    with pytest.raises(ValueError, match="kernel"):
        TemporalConv(2, 4)


def test_future_leak_of_a_downsampling_map():
    dep = torch.zeros(2, 4)
    dep[0, :2] = 1
    dep[1, :4] = 1
    assert future_leak(dep) == 0.0
    dep[0, 3] = 1
    assert future_leak(dep) == pytest.approx(1 / 7)


# ----------------------------------------------------------------------- diffusion classifier
class _Toy(torch.nn.Module):
    """Predicts v as if the clean clip were the constant ``label - 1`` (v objective)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond):
        from viddiff_mini.diffusion.schedules import get_schedule
        alpha, sigma = get_schedule("cosine").alpha_sigma(t)
        a, s = alpha.view(-1, 1, 1, 1, 1), sigma.view(-1, 1, 1, 1, 1)
        x0 = (cond["label"].float() - 1).view(-1, 1, 1, 1, 1).expand_as(x)
        eps = (x - a * x0) / s
        return a * eps - s * x0 + 0 * self.p


def test_diffusion_classifier_picks_the_label_that_explains_the_clip():
    from viddiff_mini.diffusion import Diffusion
    x0 = torch.stack([torch.full((1, 2, 2, 2), v) for v in (-1.0, 0.0, 1.0)])
    out = diffusion_classify(_Toy(), Diffusion("cosine", "v"), x0, 3, times=(0.3, 0.6))
    assert out["pred"].tolist() == [0, 1, 2]
    assert out["losses"].shape == (3, 3) and (out["margin"] > 0).all()


# ----------------------------------------------------------------------- scaling sweep
def test_power_law_fit_recovers_the_exponent():
    c = [1e9, 1e10, 1e11]
    a, b = fit_power_law(c, [5.0 * x ** -0.25 for x in c])
    assert a == pytest.approx(5.0, rel=1e-6) and b == pytest.approx(0.25, rel=1e-6)
    with pytest.raises(ValueError):
        fit_power_law([1e9], [1.0])


def test_train_flops_are_counted_and_grow_with_width():
    from viddiff_mini.diffusion import Diffusion
    from viddiff_mini.models import build_model
    x = torch.randn(2, 3, 2, 8, 8)
    flops = []
    for dim in (16, 32):
        torch.manual_seed(0)
        m = build_model("dit", in_channels=3, depth=1, dim=dim, heads=2, patch=(1, 2, 2),
                        num_classes=4)
        flops.append(count_train_flops(m, Diffusion("cosine", "v"), x,
                                       {"label": torch.tensor([0, 1])}))
        assert all(p.grad is None for p in m.parameters())          # leaves no gradients
    assert 0 < flops[0] < flops[1]


# ----------------------------------------------------------------------- stored samples
def test_stored_samples_are_keyed_by_the_weights(tmp_path, monkeypatch):
    from viddiff_mini import pretrained_samples as P
    monkeypatch.setenv("VIDDIFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "STORED_DIR", tmp_path / "stored")
    calls = []

    def fake_draw(key):
        calls.append(key)
        return {"key": key, "video_u8": torch.full((2, 3, 4, 8, 8), 255, dtype=torch.uint8),
                "labels": torch.tensor([0, 1]), "classes": ["a", "b"], "seconds": 1.0,
                "threads": 1, "torch": str(torch.__version__)}

    monkeypatch.setattr(P, "_draw", fake_draw)
    first = P.class_samples("msh-class8", per_class=1, steps=3)
    assert first["source"] == "sampled" and torch.all(first["video"] == 1.0)
    assert P.class_samples("msh-class8", per_class=1, steps=3)["source"] == "cache"
    assert len(calls) == 1
    # the committed file wins when it matches; a different weights hash is never used
    redrawn, path = P.refresh_stored("msh-class8", per_class=1, steps=3)
    assert redrawn and path.is_file() and len(calls) == 2
    assert P.refresh_stored("msh-class8", per_class=1, steps=3) == (False, path)
    assert P.class_samples("msh-class8", per_class=1, steps=3)["source"] == "stored"
    monkeypatch.setattr(P, "_key", lambda *a: {**calls[0], "sha256": "0" * 64})
    assert P.class_samples("msh-class8", per_class=1, steps=3)["source"] == "sampled"


def test_shipped_lesson_samples_match_the_shipped_weights():
    """The committed samples the notebooks show are those of the committed weights (after a
    retrain: python scripts/execute_lessons.py redraws them)."""
    from viddiff_mini import pretrained
    from viddiff_mini import pretrained_samples as P
    if "msh-class8" not in pretrained.names() or not P.stored_path("msh-class8").is_file():
        pytest.skip("msh-class8 or its stored lesson samples not in this copy (handout)")
    d = P.DEFAULTS
    key = P._key("msh-class8", d["per_class"], d["steps"], d["guidance"], d["seed"], d["sampler"])
    state = P._read(P.stored_path("msh-class8"), key)
    assert state is not None, ("stored lesson samples are stale (other weights or sampler "
                               "settings): run python scripts/execute_lessons.py")
    assert state["video_u8"].shape[0] == 8 * d["per_class"]


def test_merging_sweeps_recomputes_the_frontier():
    from viddiff_mini.analysis.scaling import merge_sweeps

    def row(width, losses):
        return {"width": width, "params": width * 100, "flops_per_step": 1,
                "points": [{"budget": b, "eval_loss": v} for b, v in zip((1e9, 1e10), losses)]}
    settings = {"widths": [], "depth": 2, "budgets": [1e9, 1e10]}
    a = {"settings": dict(settings, widths=[32]), "rows": [row(32, [0.5, 0.2])], "seconds": 1}
    b = {"settings": dict(settings, widths=[16]), "rows": [row(16, [0.4, 0.3])], "seconds": 2}
    m = merge_sweeps(a, b)
    assert [r["width"] for r in m["rows"]] == [16, 32] and m["settings"]["widths"] == [16, 32]
    assert [f["width"] for f in m["frontier"]] == [16, 32] and m["seconds"] == 3
    with pytest.raises(ValueError, match="depth"):
        merge_sweeps(a, dict(b, settings=dict(b["settings"], depth=3)))


def test_stored_results_are_optional(tmp_path, monkeypatch):
    from viddiff_mini import pretrained_samples as P
    monkeypatch.setattr(P, "ROOT", tmp_path)
    assert P.stored_result("scaling/dit-sweep.json") is None and P.stored_eval() is None
    (tmp_path / "results" / "pretrained").mkdir(parents=True)
    (tmp_path / "results" / "pretrained" / "msh-class8-eval.json").write_text('{"flicker": 0.5}')
    assert P.stored_eval("msh-class8") == {"flicker": 0.5}


def test_generate_decodes_through_the_autoencoder(monkeypatch):
    """generate() samples a shipped latent generator and returns pixel clips (2 DDIM steps)."""
    from viddiff_mini import pretrained
    from viddiff_mini.pretrained_samples import generate
    if "msh-class8" not in pretrained.names():
        pytest.skip("msh-class8 not shipped")
    calls = []
    x = generate("msh-class8", labels=[0, 3], steps=2, x0_hook=lambda x0, t: calls.append(1) or x0)
    assert x.shape == (2, 3, 16, 32, 32) and x.min() >= -1 and x.max() <= 1 and calls
