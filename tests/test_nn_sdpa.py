"""SDPA batch chunking (nn/sdpa.py): equal to the unchunked call, and within the CUDA kernels'
limits at the gpu preset's real shapes (walked on the meta device: no memory, no GPU)."""

from dataclasses import replace

import pytest
import torch
from torch.nn import functional as F

from viddiff_mini.config import get_preset
from viddiff_mini.nn.attention import build_attention
from viddiff_mini.nn.sdpa import (
    MAX_GRID,
    MAX_INDEX,
    record_sdpa_calls,
    sdpa,
    sdpa_chunks,
    sdpa_footprint,
    sdpa_limits,
    sdpa_violations,
)


def _qkv(B=7, H=4, L=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, L, d, generator=g, requires_grad=True) for _ in range(3)]


def _run(fn, q, k, v, **kw):
    out = fn(q, k, v, **kw)
    out.square().sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    return out.detach(), grads


MASKS = {
    "none": lambda B, H, L: None,
    "2d": lambda B, H, L: torch.rand(L, L, generator=torch.Generator().manual_seed(3)) > 0.3,
    "batch": lambda B, H, L: torch.rand(B, 1, L, L, generator=torch.Generator().manual_seed(4)) > 0.3,
    "batch_heads": lambda B, H, L: torch.rand(B, H, L, L,
                                              generator=torch.Generator().manual_seed(5)) > 0.3,
    "keys": lambda B, H, L: torch.rand(B, 1, 1, L, generator=torch.Generator().manual_seed(6)) > 0.2,
}


@pytest.mark.parametrize("mask", list(MASKS))
@pytest.mark.parametrize("limits", [dict(grid=3), dict(index=2 * 128 * 32 + 1),
                                    dict(grid=2, index=1)])
def test_chunked_equals_unchunked(mask, limits):
    B, H, L = 7, 4, 5
    q, k, v = _qkv(B, H, L)
    m = MASKS[mask](B, H, L)
    if m is not None:
        m = m | torch.eye(L, dtype=torch.bool)  # no fully masked row
    ref, ref_g = _run(F.scaled_dot_product_attention, q, k, v, attn_mask=m)
    with sdpa_limits(**limits):
        bc, hc = sdpa_chunks(B, H, L, L, 8)
        assert bc < B or hc < H  # the limits really force chunking
        out, g = _run(sdpa, q, k, v, attn_mask=m)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_causal_chunked():
    q, k, v = _qkv(B=5, L=6)
    ref, ref_g = _run(F.scaled_dot_product_attention, q, k, v, is_causal=True)
    with sdpa_limits(grid=2):
        out, g = _run(sdpa, q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref)
    for a, b in zip(g, ref_g):
        torch.testing.assert_close(a, b)


def test_within_limits_is_passed_through():
    q, k, v = _qkv()
    assert torch.equal(sdpa(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_chunk_arithmetic():
    # U-Net level 0 temporal attention at batch 64: 64 * 64 * 64 sequences of 16 frames
    bc, hc = sdpa_chunks(262_144, 8, 16, 16, 16)
    assert hc == 8 and bc == MAX_GRID
    assert sdpa_footprint(bc, hc, 16, 16, 16) < MAX_INDEX
    # a sequence so long one sample breaks the index bound: heads are split too
    bc, hc = sdpa_chunks(2, 16, 2**22, 2**22, 64)
    assert bc == 1 and hc < 16 and sdpa_footprint(1, hc, 2**22, 2**22, 64) < MAX_INDEX


@pytest.mark.parametrize("kind", ["temporal", "spatial", "divided", "full", "window", "sparse"])
def test_attention_modules_chunked_equal(kind):
    torch.manual_seed(0)
    m = build_attention(kind, 16, 4)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    x = torch.randn(3, 16, 4, 4, 4, requires_grad=True)
    ref = m(x)
    ref.square().sum().backward()
    ref_g = x.grad.clone()
    x.grad = None
    with sdpa_limits(grid=2), record_sdpa_calls() as calls:
        out = m(x)
        out.square().sum().backward()
    assert calls and max(c.batch for c in calls) <= 2
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(x.grad, ref_g)


def _gpu_cfg(model: str, batch: int | None):
    cfg = get_preset("gpu")
    if model != cfg.model:
        cfg = replace(cfg, model=model, model_kwargs={})
    return replace(cfg, batch_size=batch or cfg.batch_size)


@pytest.mark.parametrize("model", ["unet3d", "dit"])
@pytest.mark.parametrize("batch", [None, 64])
def test_gpu_preset_sdpa_calls_within_kernel_limits(model, batch):
    """Walk the gpu preset's forward on the meta device and check every SDPA call's shape."""
    from viddiff_mini.train import build_model_for

    cfg = _gpu_cfg(model, batch)
    B = cfg.batch_size
    with torch.device("meta"):
        net = build_model_for(cfg)
        x = torch.empty(B, 3, cfg.frames, cfg.size, cfg.size)
        t = torch.empty(B)
        y = torch.zeros(B, dtype=torch.long)
    with record_sdpa_calls() as calls:
        out = net(x, t, {"label": y})
    assert out.shape == x.shape
    assert calls, "no SDPA call recorded"
    assert sdpa_violations(calls) == []
    assert all(c.batch <= MAX_GRID and c.footprint < MAX_INDEX for c in calls)
    # the walk sees the real shapes: the biggest temporal call is at the grid limit (chunked)
    if B == 64:
        assert max(c.batch for c in calls) == MAX_GRID if model == "unet3d" else \
            max(c.batch for c in calls) > MAX_GRID // 2
