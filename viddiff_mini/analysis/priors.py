"""Temporal priors (11.1.5): periodicity and causality, made measurable.

* :func:`autocorrelation`, :func:`dominant_period` — how self-similar a signal over time is
  (a per-frame brightness or an object's area): a periodic clip has a peak at its period,
  the prior "what happened one period ago happens again".
* :class:`TemporalConv` — a temporal convolution with symmetric ("same") or causal (left
  only) padding; :func:`frame_dependence` measures, for any video-to-video function, which
  input frames each output frame depends on (finite differences, so it works on trained
  networks without hooks); :func:`future_leak` is the share of that dependence on frames
  *after* the output frame — zero for a causal model.

Shapes: signals (..., t); videos (b, c, t, h, w).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def autocorrelation(x: torch.Tensor, max_lag: int | None = None) -> torch.Tensor:
    """Normalised autocorrelation (..., max_lag + 1) of signals (..., t): Pearson correlation
    of x[:t-k] with x[k:] for k = 0..max_lag (1 at lag 0; NaN where a window is constant)."""
    x = torch.as_tensor(x, dtype=torch.float64)
    t = x.shape[-1]
    max_lag = t - 2 if max_lag is None else max_lag
    if not 0 <= max_lag <= t - 2:
        raise ValueError(f"max_lag: expected 0..{t - 2} for a signal of {t} frames, got {max_lag}")
    out = []
    for k in range(max_lag + 1):
        a, b = x[..., : t - k], x[..., k:]
        a, b = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True)
        den = (a.square().sum(-1) * b.square().sum(-1)).sqrt()
        out.append(torch.where(den > 1e-12, (a * b).sum(-1) / den.clamp_min(1e-300),
                               torch.full_like(den, float("nan"))))
    return torch.stack(out, -1)


def dominant_period(x: torch.Tensor, min_lag: int = 2, max_lag: int | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(period (...,) long, its autocorrelation (...,)): the lag >= ``min_lag`` where the
    autocorrelation of (..., t) is largest — one period of a periodic signal."""
    ac = autocorrelation(x, max_lag)[..., min_lag:]
    best = torch.nan_to_num(ac, nan=-2.0).argmax(-1)
    return best + min_lag, ac.gather(-1, best.unsqueeze(-1)).squeeze(-1)


class TemporalConv(nn.Module):
    """A k-tap convolution over time, per channel position: ``causal=False`` pads (k-1)/2
    frames on each side (frame i sees i-(k-1)/2 .. i+(k-1)/2), ``causal=True`` pads k-1 frames
    on the left only (frame i sees i-k+1 .. i: never the future). (b, c, t, h, w) -> same."""

    def __init__(self, channels: int, kernel: int = 3, causal: bool = False):
        super().__init__()
        if kernel < 1 or (not causal and kernel % 2 == 0):
            raise ValueError(f"kernel: expected a positive (odd unless causal) int, got {kernel}")
        self.kernel, self.causal = kernel, causal
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel - 1
        pad = (k, 0) if self.causal else (k // 2, k // 2)
        return self.conv(F.pad(x, (0, 0, 0, 0, *pad), mode="replicate"))


@torch.no_grad()
def frame_dependence(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     eps: float = 1e-2, seed: int = 0) -> torch.Tensor:
    """(t_out, t_in): how much output frame j changes (mean |dy|, relative to the largest
    entry) when input frame s alone is nudged by ``eps`` times a fixed random direction.
    ``fn`` maps (b, c, t_in, h, w) to (b, c', t_out, h', w') (e.g. an encoder)."""
    g = torch.Generator().manual_seed(seed)
    base = fn(x)
    t_in = x.shape[2]
    cols = []
    for s in range(t_in):
        d = torch.zeros_like(x)
        d[:, :, s] = eps * torch.randn(x[:, :, s].shape, generator=g).to(x)
        cols.append((fn(x + d) - base).abs().mean((0, 1, 3, 4)))          # (t_out,)
    dep = torch.stack(cols, 1).float()
    return dep / dep.max().clamp_min(1e-30)


def future_leak(dep: torch.Tensor) -> float:
    """Share of a (t_out, t_in) dependence matrix on input frames *later* than each output
    frame covers (output j covers input frames up to (j + 1) * t_in / t_out - 1): 0 for a
    causal map."""
    t_out, t_in = dep.shape
    r = t_in / t_out
    s = torch.arange(t_in).view(1, -1)
    last = ((torch.arange(t_out) + 1) * r).ceil().long().view(-1, 1) - 1
    return float(dep[s > last].sum() / dep.sum().clamp_min(1e-30))
