"""One ``scaled_dot_product_attention`` for every attention layer: batch-chunked to fit the kernels.

The fused CUDA attention kernels put the batch (and heads) in a launch-grid dimension and
index their buffers with 32-bit integers. Two limits follow (pytorch/pytorch #142228,
#146704):

* **grid**: batch <= 65,535 (beyond: "CUDA error: invalid configuration argument");
* **index**: ``batch * heads * roundup(L, 128) * max(d, 32) < 2**31`` (beyond: an illegal
  memory access in the flash backward, which kills the CUDA context).

Video attention breaks both easily: temporal attention at a 64x64 level of a batch of 64
clips attends over ``b h w = 262,144`` sequences. :func:`sdpa` runs such a call in chunks
of the batch (and, if one sample alone is too big, of the heads) that each satisfy both
limits, and concatenates the results; a call within the limits is passed through
unchanged. Each sequence's attention is independent of the others, so chunking changes
nothing but the launch shape (tested: outputs and gradients equal the unchunked call).

:func:`record_sdpa_calls` records the shape of every SDPA call a model makes (works on the
``meta`` device and under ``FakeTensorMode``: no memory, no GPU), and
:func:`sdpa_violations` lists the calls that break the limits; the tests walk the gpu
preset's U-Net and DiT with them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

MAX_GRID = 65_535          # CUDA grid y / z dimension limit (the batch lives there)
MAX_INDEX = 2**31          # 32-bit element index bound of the flash / efficient kernels

_limits = {"grid": MAX_GRID, "index": MAX_INDEX}


def _roundup(n: int, m: int = 128) -> int:
    return -(-n // m) * m


def sdpa_footprint(batch: int, heads: int, lq: int, lk: int, d: int) -> int:
    """``batch * heads * roundup(max(Lq, Lk), 128) * max(d, 32)``: the kernels' index extent."""
    return batch * heads * _roundup(max(lq, lk)) * max(d, 32)


def sdpa_chunks(batch: int, heads: int, lq: int, lk: int, d: int) -> tuple[int, int]:
    """``(batch chunk, heads chunk)`` so that every piece is within both limits."""
    grid, index = _limits["grid"], _limits["index"]
    per_head = sdpa_footprint(1, 1, lq, lk, d)
    heads_chunk = heads
    if heads * per_head >= index:   # one sample alone is too big: split its heads too
        heads_chunk = max(1, (index - 1) // per_head)
    batch_chunk = max(1, min(grid, (index - 1) // (heads_chunk * per_head)))
    return min(batch_chunk, batch), min(heads_chunk, heads)


@contextlib.contextmanager
def sdpa_limits(grid: int = MAX_GRID, index: int = MAX_INDEX):
    """Temporarily use other limits (tests force chunking at CPU-sized shapes with this)."""
    old = dict(_limits)
    _limits.update(grid=grid, index=index)
    try:
        yield
    finally:
        _limits.update(old)


def _slice_mask(mask, dim: int, start: int, stop: int, full: int):
    """The part of a broadcastable mask that goes with rows ``start:stop`` of ``dim``."""
    if mask is None or mask.ndim < 4 - dim or mask.ndim == 0:
        return mask
    axis = mask.ndim - 4 + dim        # masks broadcast from the right: (B, H, Lq, Lk)
    if axis < 0 or mask.shape[axis] == 1:
        return mask
    if mask.shape[axis] != full:
        raise ValueError(f"attn_mask shape {tuple(mask.shape)} does not broadcast to the "
                         f"attention's {'batch' if dim == 0 else 'heads'} size {full}")
    return mask.narrow(axis, start, stop - start)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask=None,
         is_causal: bool = False) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` on ``(B, heads, L, d)`` within the kernels' limits.

    q ``(B, H, Lq, d)``, k ``(B, H, Lk, d)``, v ``(B, H, Lk, dv)``, attn_mask bool or float
    broadcastable to ``(B, H, Lq, Lk)``. Returns ``(B, H, Lq, dv)``. Calls that fit are passed
    through unchanged; larger ones run in batch (then head) chunks (see the module docstring).
    """
    if q.ndim != 4:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    B, H, lq, d = q.shape
    lk, dv = k.shape[-2], v.shape[-1]
    bc, hc = sdpa_chunks(B, H, lq, lk, max(d, dv))
    if bc >= B and hc >= H:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal)
    outs = []
    for b0 in range(0, B, bc):
        b1 = min(B, b0 + bc)
        mb = _slice_mask(attn_mask, 0, b0, b1, B)
        qb, kb, vb = q[b0:b1], k[b0:b1], v[b0:b1]
        if hc >= H:
            outs.append(F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mb,
                                                       is_causal=is_causal))
            continue
        heads = []
        for h0 in range(0, H, hc):
            h1 = min(H, h0 + hc)
            heads.append(F.scaled_dot_product_attention(
                qb[:, h0:h1], kb[:, h0:h1], vb[:, h0:h1],
                attn_mask=_slice_mask(mb, 1, h0, h1, H), is_causal=is_causal))
        outs.append(torch.cat(heads, dim=1))
    return torch.cat(outs, dim=0)


# --------------------------------------------------------------------------- shape audit
@dataclass(frozen=True)
class SDPACall:
    """The shape of one ``scaled_dot_product_attention`` call."""
    batch: int
    heads: int
    lq: int
    lk: int
    d: int
    dtype: str

    @property
    def footprint(self) -> int:
        return sdpa_footprint(self.batch, self.heads, self.lq, self.lk, self.d)

    def violations(self) -> list[str]:
        bad = []
        if self.batch > MAX_GRID:
            bad.append(f"batch {self.batch} > {MAX_GRID}")
        if self.footprint >= MAX_INDEX:
            bad.append(f"batch*heads*roundup(L,128)*max(d,32) = {self.footprint} >= 2^31")
        return bad


class _Recorder(TorchFunctionMode):
    def __init__(self, calls: list):
        super().__init__()
        self.calls = calls

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            if q.ndim == 4:
                self.calls.append(SDPACall(int(q.shape[0]), int(q.shape[1]), int(q.shape[2]),
                                           int(k.shape[2]), int(max(q.shape[3], v.shape[3])),
                                           str(q.dtype).replace("torch.", "")))
        return func(*args, **kwargs)


@contextlib.contextmanager
def record_sdpa_calls():
    """Yield a list that fills with an :class:`SDPACall` per SDPA call made inside."""
    calls: list[SDPACall] = []
    with _Recorder(calls):
        yield calls


def sdpa_violations(calls) -> list[str]:
    """Human-readable list of the calls in ``calls`` that break a kernel limit."""
    return [f"{c}: {'; '.join(c.violations())}" for c in calls if c.violations()]


__all__ = ["sdpa", "sdpa_chunks", "sdpa_footprint", "sdpa_limits", "record_sdpa_calls",
           "sdpa_violations", "SDPACall", "MAX_GRID", "MAX_INDEX"]
