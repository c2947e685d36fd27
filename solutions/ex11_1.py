"""Reference solutions for lesson 11.1 (data and baselines). Same functions as
``lessons/exercises/ex11_1.py``, solved. Instructor only: never in the student handout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from viddiff_mini.utils import check_video


# =========================================================================== Exercise 11.1.1a
def _estimate_global_flow(f0: torch.Tensor, f1: torch.Tensor, max_shift: int) -> torch.Tensor:
    """One integer translation per frame pair by exhaustive block matching.

    f0, f1: ``(n, c, h, w)``. Returns ``(n, 2)`` = ``(dx, dy)`` such that ``f1(p + d) ~ f0(p)``.
    """
    n, _, h, w = f0.shape
    best_err = torch.full((n,), float("inf"), dtype=f0.dtype, device=f0.device)
    best = torch.zeros(n, 2, dtype=f0.dtype, device=f0.device)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            if abs(dx) >= w or abs(dy) >= h:
                continue
            # Overlap: pixels p of f0 whose moved position p + d is still inside f1.
            a = f0[:, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
            b = f1[:, :, max(0, dy):h - max(0, -dy), max(0, dx):w - max(0, -dx)]
            err = (a - b).abs().mean(dim=(1, 2, 3))
            # Strictly better only, so ties keep the earlier (smaller |shift| comes first
            # for the zero shift, which is what a static clip should get).
            better = err < best_err - 1e-12
            best_err = torch.where(better, err, best_err)
            best[better] = torch.tensor([dx, dy], dtype=f0.dtype, device=f0.device)
    return best


def _sample_at(frames: torch.Tensor, disp: torch.Tensor) -> torch.Tensor:
    """Backward warp: ``out(p) = frames(p + disp(p))`` with bilinear sampling.

    frames ``(n, c, h, w)``, disp ``(n, 2, h, w)`` in pixels (dx, dy).
    """
    n, _, h, w = frames.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=frames.dtype, device=frames.device),
                            torch.arange(w, dtype=frames.dtype, device=frames.device),
                            indexing="ij")
    x = xs + disp[:, 0]
    y = ys + disp[:, 1]
    # grid_sample wants (x, y) in [-1, 1]; align_corners=True maps -1/1 to pixel centres 0/w-1.
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1)
    return F.grid_sample(frames, grid, mode="bilinear", padding_mode="border",
                         align_corners=True)


def interpolate_frames(video: torch.Tensor, factor: int, method: str = "linear",
                       flow: torch.Tensor | None = None, max_shift: int = 4) -> torch.Tensor:
    """Frame interpolation baseline: insert ``factor - 1`` frames between each pair.

    video ``(b, c, t, h, w)`` -> ``(b, c, (t - 1) * factor + 1, h, w)``; the original frames
    stay exactly at positions ``0, factor, 2 * factor, ...``. ``"linear"`` blends the two
    neighbours; ``"flow"`` samples frame ``i`` at ``p - a F`` and frame ``i + 1`` at
    ``p + (1 - a) F`` (both moved to time ``a``) and then blends, where ``F`` is the given
    flow ``(b, 2, t - 1, h, w)`` or one global shift per pair found by block matching.
    """
    check_video(video, "video", min_frames=2)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor: expected an integer >= 1, got {factor!r}")
    if method not in ("linear", "flow"):
        raise ValueError(f"method: expected 'linear' or 'flow', got {method!r}")
    b, c, t, h, w = video.shape
    if flow is not None and tuple(flow.shape) != (b, 2, t - 1, h, w):
        raise ValueError(f"flow: expected shape (b, 2, t - 1, h, w) = {(b, 2, t - 1, h, w)}, "
                         f"got {tuple(flow.shape)}")
    if factor == 1:
        return video.clone()

    # Fold the (batch, gap) pairs into one axis: every gap is interpolated the same way.
    f0 = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w")
    f1 = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
    if method == "flow":
        if flow is None:
            shift = _estimate_global_flow(f0, f1, max_shift)          # (n, 2)
            motion = shift[:, :, None, None].expand(-1, -1, h, w)      # constant field
        else:
            motion = rearrange(flow.to(video.dtype), "b two t h w -> (b t) two h w")

    frames = []
    for k in range(factor):  # k = 0 is the original frame itself
        a = k / factor
        if k == 0:
            mid = f0
        elif method == "linear":
            mid = (1 - a) * f0 + a * f1
        else:
            # Approximation: use the flow at p for the point passing through p at time a.
            mid = (1 - a) * _sample_at(f0, -a * motion) + a * _sample_at(f1, (1 - a) * motion)
        frames.append(rearrange(mid, "(b t) c h w -> b c t h w", b=b))
    # Interleave: gap 0 frames k=0..factor-1, gap 1 ..., then the last original frame.
    inner = torch.stack(frames, dim=3)                       # (b, c, t-1, factor, h, w)
    inner = rearrange(inner, "b c t k h w -> b c (t k) h w")
    return torch.cat([inner, video[:, :, -1:]], dim=2)
