"""Section 11.2.1: 3-D convolutions for video — full, factorised (2+1)D, pseudo-3D.

Every variant maps ``(b, c_in, t, h, w) -> (b, c_out, t, h, w)`` ("same" padding, stride 1).
Costs below are for a k x k x k receptive field, per output voxel, biases ignored:

============== ================================== ======================================
kind           parameters                         multiply-adds per output voxel
============== ================================== ======================================
full3d         k^3 c_in c_out                     k^3 c_in c_out / c_out = k^3 c_in
2plus1d        k^2 c_in M + k M c_out  (~= full)  (k^2 c_in M + k M c_out) / c_out
2plus1d_plain  k^2 c_in c_out + k c_out^2         k^2 c_in + k c_out
pseudo3d       k^2 c_in c_out + k c_out^2         k^2 c_in + k c_out
============== ================================== ======================================

(``M`` = R(2+1)D's intermediate width chosen so that 2plus1d has full3d's parameter count.)
Total multiply-adds of a layer = (per voxel) x c_out x t x h x w.
"""

from __future__ import annotations

import contextlib
import os

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

CONV_KINDS = ("full3d", "2plus1d", "2plus1d_plain", "pseudo3d")


def _check_kernel(kernel: int) -> int:
    if not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel: expected a positive odd int (same padding), got {kernel!r}")
    return kernel


class FullConv3d(nn.Module):
    """Full 3-D convolution, one ``k x k x k`` kernel.

    Parameters: ``k^3 c_in c_out + c_out``; multiply-adds: ``k^3 c_in c_out t h w``.
    Most expressive (every output sees a joint space-time cube) and most expensive.
    """

    kind = "full3d"

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        k = _check_kernel(kernel)
        self.conv = nn.Conv3d(c_in, c_out, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c_in, t, h, w) -> (b, c_out, t, h, w)."""
        if _cpu_channels_last(x):  # CPU fast path (see _FAST above)
            return _to_ncdhw(self.conv(_to_ndhwc(x)))
        return self.conv(x)

    @property
    def last(self) -> nn.Module:
        """The layer whose zero-init silences the whole conv (used for zero-init residuals)."""
        return self.conv


# CPU fast paths (on by default; issue 13 item 7). Both compute the same convolution with the
# same weights (same parameters, same state dict); only the order in which oneDNN accumulates
# the sums changes, so outputs and gradients equal the reference formulation up to fp32
# rounding (~1e-6 relative; tested with ``torch.testing.assert_close`` against
# ``fast_conv(False)``, forward and gradients, in tests/test_nn_conv3d.py), not bit for bit.
# Both are deterministic (same inputs, same thread count -> same bits: exact resume holds).
#
# * "temporal": a (k, 1, 1) temporal Conv3d runs as a (k, 1) Conv2d on the free view
#   (b, c, t, h*w). PyTorch sends such a 3-D kernel with 1 x 1 spatial extent to its
#   unfold-based ``slow_conv3d`` on CPU at small batches, the 2-D one to oneDNN: measured
#   2.7x faster forward+backward at (2, 32, 8, 32, 32), 1 thread.
# * "channels_last": a (2+1)D or full 3-D conv on CPU runs in channels-last-3d memory
#   (NDHWC) and hands back a contiguous tensor. oneDNN reorders NCDHW to its own layout and
#   back on every call; in NDHWC it does not, and the temporal conv's 2-D view of an NDHWC
#   tensor is still free. Measured forward+backward, 1 thread, CPU time: a level-0 (2+1)D
#   conv of the cpu preset (8, 16, 16, 32, 32) 1.5-1.7x faster, the stem / head 1.2x / 1.9x
#   (two layout copies included). Only inside the conv: GroupNorm and SiLU backward are
#   slower in NDHWC on CPU, so the rest of the network keeps NCDHW.
#
# Reference formulation: ``with fast_conv(False):`` (or VIDDIFF_REFERENCE_CONV=1 in the
# environment); ``fast_temporal_conv(False)`` / VIDDIFF_FAST_TEMPORAL_CONV=0 turn off the
# temporal one alone. CUDA and ``meta`` tensors always take the plain PyTorch path.
_REFERENCE = os.environ.get("VIDDIFF_REFERENCE_CONV", "0").strip() == "1"
_FAST = {"temporal": not _REFERENCE
         and os.environ.get("VIDDIFF_FAST_TEMPORAL_CONV", "1").strip() != "0",
         "channels_last": not _REFERENCE}


@contextlib.contextmanager
def _fast_flags(**flags: bool):
    old = dict(_FAST)
    _FAST.update({k: bool(v) for k, v in flags.items()})
    try:
        yield
    finally:
        _FAST.update(old)


def fast_conv(enabled: bool = True):
    """Context manager: every CPU conv fast path on (default) or off (the reference
    formulation, plain ``nn.Conv3d`` in NCDHW), see above."""
    return _fast_flags(temporal=enabled, channels_last=enabled)


def fast_temporal_conv(enabled: bool = True):
    """Context manager: temporal ``(k, 1, 1)`` convs on CPU run as 2-D convs (see above)."""
    return _fast_flags(temporal=enabled)


def _cpu_channels_last(x: torch.Tensor) -> bool:
    return _FAST["channels_last"] and x.ndim == 5 and x.device.type == "cpu"


class _Relayout(torch.autograd.Function):
    """``x.contiguous(memory_format=fmt)`` whose backward hands the gradient back in
    ``back`` layout. (Plain ``.contiguous`` passes the gradient through in the *new*
    layout: NDHWC gradients then meet NCDHW activations in SiLU / GroupNorm backward, whose
    mixed-layout kernels were measured 3-10x slower than the conv time saved.)"""

    @staticmethod
    def forward(ctx, x, fmt, back):
        ctx.back = back
        return x.contiguous(memory_format=fmt).clone() if x.is_contiguous(memory_format=fmt) \
            else x.contiguous(memory_format=fmt)

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous(memory_format=ctx.back), None, None


def _to_ndhwc(x: torch.Tensor) -> torch.Tensor:
    return _Relayout.apply(x, torch.channels_last_3d, torch.contiguous_format)


def _to_ncdhw(x: torch.Tensor) -> torch.Tensor:
    return _Relayout.apply(x, torch.contiguous_format, torch.channels_last_3d)


class TemporalConv3d(nn.Conv3d):
    """``nn.Conv3d`` with a ``(k, 1, 1)`` kernel (same parameters and state dict) that runs
    as a ``(k, 1)`` 2-D conv on CPU unless :func:`fast_temporal_conv` is off."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (_FAST["temporal"] and x.ndim == 5 and x.device.type == "cpu"
                and self.kernel_size[1:] == (1, 1) and self.stride == (1, 1, 1)
                and self.dilation == (1, 1, 1) and self.padding_mode == "zeros"
                and isinstance(self.padding, tuple) and self.padding[1:] == (0, 0)):
            b, c, t, h, w = x.shape
            # a view for NCDHW and for NDHWC input alike (h and w are adjacent in both)
            y = F.conv2d(x.reshape(b, c, t, h * w), self.weight.view(*self.weight.shape[:3], 1),
                         self.bias, padding=(self.padding[0], 0), groups=self.groups)
            return y.view(b, y.shape[1], t, h, w)
        return super().forward(x)


def r2plus1d_width(c_in: int, c_out: int, kernel: int = 3) -> int:
    """R(2+1)D intermediate width ``M = floor(k^3 c_in c_out / (k^2 c_in + k c_out))``.

    With this M, spatial (k^2 c_in M) + temporal (k M c_out) weights equal full 3-D's
    k^3 c_in c_out (up to the floor), so the comparison with full3d is at equal size.
    """
    k = kernel
    return max(1, (k**3 * c_in * c_out) // (k**2 * c_in + k * c_out))


class Conv2Plus1d(nn.Module):
    """Factorised (2+1)D convolution (R(2+1)D, Tran et al. 2018).

    spatial ``(1, k, k)`` conv c_in -> M, nonlinearity, temporal ``(k, 1, 1)`` conv M -> c_out.
    ``plain=False``: M = :func:`r2plus1d_width` (same parameters as full3d, twice the
    nonlinearities); ``plain=True``: M = c_out and no mid nonlinearity (a rank-factorised
    full 3-D kernel). Parameters ``k^2 c_in M + k M c_out`` (+ biases M + c_out);
    multiply-adds ``(k^2 c_in M + k M c_out) t h w``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, plain: bool = False):
        super().__init__()
        k = _check_kernel(kernel)
        self.kind = "2plus1d_plain" if plain else "2plus1d"
        self.mid = c_out if plain else r2plus1d_width(c_in, c_out, k)
        self.spatial = nn.Conv3d(c_in, self.mid, (1, k, k), padding=(0, k // 2, k // 2))
        self.act = nn.Identity() if plain else nn.SiLU()
        self.temporal = TemporalConv3d(self.mid, c_out, (k, 1, 1), padding=(k // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c_in, t, h, w) -> (b, c_out, t, h, w)."""
        if _cpu_channels_last(x):  # CPU fast path (see _FAST above): NDHWC inside, NCDHW out
            return _to_ncdhw(self.temporal(self.act(self.spatial(_to_ndhwc(x)))))
        return self.temporal(self.act(self.spatial(x)))

    @property
    def last(self) -> nn.Module:
        return self.temporal


class PseudoConv3d(nn.Module):
    """Pseudo-3D convolution (Make-A-Video): a 2-D conv per frame, then a 1-D conv per pixel.

    ``Conv2d`` over "(b t) c h w", then ``Conv1d`` over "(b h w) c t". The temporal conv
    starts as the identity (``dirac_`` weights, zero bias), so at init the layer *is* the
    2-D conv applied frame by frame: pretrained image weights can be loaded into
    ``spatial`` and the video model starts exactly where the image model was.
    Parameters ``k^2 c_in c_out + k c_out^2`` (+ 2 c_out); multiply-adds
    ``(k^2 c_in + k c_out) c_out t h w``. Cheapest; space-time interaction only through
    the stacking of the two convs. A 4-D input ``(b, c, h, w)`` runs the 2-D conv only.
    """

    kind = "pseudo3d"

    def __init__(self, c_in: int, c_out: int, kernel: int = 3):
        super().__init__()
        k = _check_kernel(kernel)
        self.spatial = nn.Conv2d(c_in, c_out, k, padding=k // 2)
        self.temporal = nn.Conv1d(c_out, c_out, k, padding=k // 2)
        nn.init.dirac_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c_in, t, h, w) -> (b, c_out, t, h, w); (b, c, h, w) -> 2-D conv only."""
        if x.ndim == 4:
            return self.spatial(x)
        b, _, t, h, w = x.shape
        y = self.spatial(rearrange(x, "b c t h w -> (b t) c h w"))
        y = rearrange(y, "(b t) c h w -> (b h w) c t", b=b, t=t)
        y = self.temporal(y)
        return rearrange(y, "(b h w) c t -> b c t h w", b=b, h=h, w=w)

    @property
    def last(self) -> nn.Module:
        # Zeroing the spatial conv silences the output (the temporal conv has zero bias)
        # while keeping the temporal conv an identity, i.e. the Make-A-Video init.
        return self.spatial


def build_conv(kind: str, c_in: int, c_out: int, kernel: int = 3) -> nn.Module:
    """A video conv of the given kind: ``(b, c_in, t, h, w) -> (b, c_out, t, h, w)``.

    kind: one of :data:`CONV_KINDS`. The module has a ``kind`` attribute and a ``last``
    layer (the one to zero for a zero-init residual branch, see :func:`zero_init_`).
    """
    if kind == "full3d":
        return FullConv3d(c_in, c_out, kernel)
    if kind == "2plus1d":
        return Conv2Plus1d(c_in, c_out, kernel, plain=False)
    if kind == "2plus1d_plain":
        return Conv2Plus1d(c_in, c_out, kernel, plain=True)
    if kind == "pseudo3d":
        return PseudoConv3d(c_in, c_out, kernel)
    raise ValueError(f"conv kind {kind!r} unknown; expected one of {CONV_KINDS}")


def zero_init_(conv: nn.Module) -> nn.Module:
    """Zero the ``last`` layer of a conv from :func:`build_conv` so it outputs 0 at init."""
    layer = conv.last if hasattr(conv, "last") else conv
    nn.init.zeros_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return conv


def conv_cost(kind: str, c_in: int, c_out: int, kernel: int = 3,
              shape: tuple[int, int, int] = (1, 1, 1)) -> dict[str, int]:
    """Parameters and multiply-adds of a conv kind for an output of ``shape = (t, h, w)``.

    Counted from a real module (parameters) and the formulas in the module docstring
    (multiply-adds, biases ignored). Used by the 11.2.1 notebook's comparison table.
    """
    m = build_conv(kind, c_in, c_out, kernel)
    k = kernel
    voxels = shape[0] * shape[1] * shape[2]
    if kind == "full3d":
        macs = k**3 * c_in * c_out
    elif kind in ("2plus1d", "2plus1d_plain"):
        macs = k**2 * c_in * m.mid + k * m.mid * c_out
    else:
        macs = k**2 * c_in * c_out + k * c_out * c_out
    return {"params": sum(p.numel() for p in m.parameters()), "macs": macs * voxels}


__all__ = ["CONV_KINDS", "FullConv3d", "Conv2Plus1d", "PseudoConv3d", "TemporalConv3d",
           "build_conv", "zero_init_", "r2plus1d_width", "conv_cost", "fast_conv",
           "fast_temporal_conv"]
