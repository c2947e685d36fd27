"""Section 11.2.3: propagating information between frames.

``build_temporal(kind, dim, heads=4, **opts)`` returns a module ``(b, c, t, h, w) -> same``
that mixes information along time. All learned kinds add their own residual and start as
the identity (zero-initialised output, or a Dirac kernel), so they can be inserted into a
trained image network without changing its output:

============== =================================================================== ========
kind           what moves between frames                                           identity
============== =================================================================== ========
attention      temporal self-attention at each pixel (any frame -> any frame)      yes
recurrent      a ConvGRU state carried forward frame by frame (causal)             yes
bidirectional  a forward and a backward ConvGRU pass, fused by a 1x1 conv          yes
shift          TSM: 1/8 channels shifted one frame forward, 1/8 backward, no params no (*)
gated_shift    TSM blended in by a zero-init gate per shifted channel              yes
conv           depthwise temporal conv (k frames), Dirac-initialised               yes
none           nothing                                                             yes
============== =================================================================== ========

(*) ``shift`` returns the shifted tensor itself (not ``x + shift(x)``): 3/4 of the channels
pass unchanged, the rest are moved by one frame with zero padding at the clip ends.
A one-frame input is returned unchanged by the recurrent kinds only after their (identity
at init) residual; the U-Net skips temporal layers entirely on its image path.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from .attention import TemporalAttention

TEMPORAL_KINDS = ("attention", "recurrent", "bidirectional", "shift", "gated_shift", "conv",
                  "none")


def _groups(c: int) -> int:
    return math.gcd(32, c)


class ConvGRUCell(nn.Module):
    """Convolutional GRU (Ballas et al. 2016) run over a clip.

    ``scan(xs "(b t) c h w", b, t, reverse)`` -> hidden states ``"(b t) hidden h w"``.
    The input half of the gates is computed for all frames in one batched conv; only the
    hidden-state convs run inside the (short, frame-level) loop.
    """

    def __init__(self, dim: int, hidden: int, kernel: int = 3):
        super().__init__()
        self.hidden = hidden
        p = kernel // 2
        self.x_gates = nn.Conv2d(dim, 3 * hidden, kernel, padding=p)
        self.h_gates = nn.Conv2d(hidden, 2 * hidden, kernel, padding=p, bias=False)
        self.h_cand = nn.Conv2d(hidden, hidden, kernel, padding=p, bias=False)

    def scan(self, xs: torch.Tensor, b: int, t: int, reverse: bool = False) -> torch.Tensor:
        gates = rearrange(self.x_gates(xs), "(b t) c h w -> t b c h w", b=b)
        state = xs.new_zeros(b, self.hidden, *xs.shape[-2:])
        outs = [None] * t
        for i in (reversed(range(t)) if reverse else range(t)):
            xz, xr, xn = gates[i].chunk(3, dim=1)
            hz, hr = self.h_gates(state).chunk(2, dim=1)
            z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
            cand = torch.tanh(xn + self.h_cand(r * state))
            state = (1 - z) * state + z * cand
            outs[i] = state
        return rearrange(torch.stack(outs, dim=1), "b t c h w -> (b t) c h w")


class RecurrentPropagation(nn.Module):
    """A ConvGRU carried forward over frames; output ``x + proj(h_t)`` (``proj`` zero-init).

    Causal: frame t sees frames <= t only (the norm is per frame, GroupNorm over
    "(b t) c h w"). ``hidden`` defaults to ``dim``.
    """

    kind = "recurrent"

    def __init__(self, dim: int, hidden: int | None = None, kernel: int = 3):
        super().__init__()
        hidden = hidden or dim
        self.norm = nn.GroupNorm(_groups(dim), dim)
        self.cell = ConvGRUCell(dim, hidden, kernel)
        self.proj = nn.Conv2d(hidden, dim, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> x + proj(GRU states), same shape."""
        b, c, t, h, w = x.shape
        xs = self.norm(rearrange(x, "b c t h w -> (b t) c h w"))
        out = self.proj(self.cell.scan(xs, b, t))
        return x + rearrange(out, "(b t) c h w -> b c t h w", b=b)


class BidirectionalPropagation(nn.Module):
    """Forward and backward ConvGRU passes, fused by a zero-init 1x1 conv (BasicVSR-style).

    Every frame sees the whole clip: past through ``forward_cell``, future through
    ``backward_cell``. Output ``x + fuse([h_fwd, h_bwd])``.
    """

    kind = "bidirectional"

    def __init__(self, dim: int, hidden: int | None = None, kernel: int = 3):
        super().__init__()
        hidden = hidden or dim
        self.norm = nn.GroupNorm(_groups(dim), dim)
        self.forward_cell = ConvGRUCell(dim, hidden, kernel)
        self.backward_cell = ConvGRUCell(dim, hidden, kernel)
        self.fuse = nn.Conv2d(2 * hidden, dim, 1)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> same shape."""
        b, c, t, h, w = x.shape
        xs = self.norm(rearrange(x, "b c t h w -> (b t) c h w"))
        fwd = self.forward_cell.scan(xs, b, t)
        bwd = self.backward_cell.scan(xs, b, t, reverse=True)
        out = self.fuse(torch.cat([fwd, bwd], dim=1))
        return x + rearrange(out, "(b t) c h w -> b c t h w", b=b)


class TemporalShift(nn.Module):
    """Temporal Shift Module (Lin et al. 2019): zero parameters, zero FLOPs.

    The first ``fold = max(1, round(dim * fraction))`` channels move one frame forward in
    time (frame t receives frame t-1), the next ``fold`` one frame backward, the rest stay;
    the vacated frame is zero. Returns the shifted tensor (not a residual sum).
    """

    kind = "shift"

    def __init__(self, dim: int, fraction: float = 1 / 8):
        super().__init__()
        self.fold = max(1, round(dim * fraction))
        if 2 * self.fold > dim:
            raise ValueError(f"shift: dim={dim} too small for fraction={fraction} "
                             f"(needs 2 * fold <= dim)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> shifted, same shape."""
        f = self.fold
        fwd = F.pad(x[:, :f, :-1], (0, 0, 0, 0, 1, 0))       # frame t <- frame t-1
        bwd = F.pad(x[:, f:2 * f, 1:], (0, 0, 0, 0, 0, 1))   # frame t <- frame t+1
        return torch.cat([fwd, bwd, x[:, 2 * f:]], dim=1)


class GatedTemporalShift(nn.Module):
    """TSM that starts as the identity: ``x + gate * (shift(x) - x)`` on the shifted channels.

    ``gate`` (one scalar per shifted channel, ``2 * fold`` parameters) starts at 0, so the
    layer can be inserted into a trained image network without changing it (the plain
    :class:`TemporalShift` replaces 1/4 of the channels at once, which a pretrained network
    has never seen); training opens the gate towards a full shift (gate = 1).
    """

    kind = "gated_shift"

    def __init__(self, dim: int, fraction: float = 1 / 8):
        super().__init__()
        self.shift = TemporalShift(dim, fraction)
        self.fold = self.shift.fold
        self.gate = nn.Parameter(torch.zeros(2 * self.fold))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> same shape."""
        n = 2 * self.fold
        moved = self.shift(x)[:, :n]
        mixed = x[:, :n] + self.gate.to(x.dtype)[:, None, None, None] * (moved - x[:, :n])
        return torch.cat([mixed, x[:, n:]], dim=1)


class TemporalConv(nn.Module):
    """Depthwise temporal conv ``(k, 1, 1)``, one filter per channel, Dirac-initialised.

    ``out = conv(x)`` with the kernel starting as a unit impulse at the centre tap, i.e.
    the identity; the Dirac kernel *is* the residual path (adding ``x`` would double it).
    """

    kind = "conv"

    def __init__(self, dim: int, kernel: int = 3):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel: expected a positive odd int, got {kernel!r}")
        self.conv = nn.Conv3d(dim, dim, (kernel, 1, 1), padding=(kernel // 2, 0, 0), groups=dim)
        nn.init.dirac_(self.conv.weight, groups=dim)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> same shape."""
        return self.conv(x)


class NoTemporal(nn.Module):
    """``temporal="none"``: the identity."""

    kind = "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def build_temporal(kind: str, dim: int, heads: int = 4, **opts) -> nn.Module:
    """A frame-to-frame propagation layer ``(b, c, t, h, w) -> same`` of the given kind.

    kind: one of :data:`TEMPORAL_KINDS`. Options: ``causal`` (attention), ``hidden`` and
    ``kernel`` (recurrent, bidirectional), ``fraction`` (shift, gated_shift), ``kernel``
    (conv).
    ``heads`` is used by ``attention`` only.
    """
    makers = {
        "attention": lambda causal=False: TemporalAttention(dim, heads, causal=causal),
        "recurrent": lambda hidden=None, kernel=3: RecurrentPropagation(dim, hidden, kernel),
        "bidirectional": lambda hidden=None, kernel=3: BidirectionalPropagation(dim, hidden,
                                                                               kernel),
        "shift": lambda fraction=1 / 8: TemporalShift(dim, fraction),
        "gated_shift": lambda fraction=1 / 8: GatedTemporalShift(dim, fraction),
        "conv": lambda kernel=3: TemporalConv(dim, kernel),
        "none": lambda: NoTemporal(),
    }
    if kind not in makers:
        raise ValueError(f"temporal kind {kind!r} unknown; expected one of {TEMPORAL_KINDS}")
    try:
        return makers[kind](**opts)
    except TypeError as e:
        raise ValueError(f"temporal kind {kind!r}: bad option(s) {sorted(opts)} ({e})") from e


__all__ = ["TEMPORAL_KINDS", "build_temporal", "ConvGRUCell", "RecurrentPropagation",
           "BidirectionalPropagation", "TemporalShift", "GatedTemporalShift", "TemporalConv",
           "NoTemporal"]
