"""Motion trajectories as a control signal (section 11.3.3 运动轨迹控制).

A trajectory is a tensor ``(k, t, 2)`` of per-object pixel centres ``(x, y)`` for ``k``
objects over ``t`` frames -- the same layout as MovingShapes-101's ground-truth
``trajectories`` (a missing object is NaN). This module

* builds trajectories: Bezier curves of any order (de Casteljau, with the Bernstein form for
  comparison), sparse control points interpolated linearly or with Catmull-Rom splines,
  several objects stacked into one tensor;
* checks a request against the frame and against physics: points outside the frame (error
  or documented clamp), speeds beyond ``max_speed`` px/frame, two objects at the same place at
  the same time when ``no_overlap`` is asked, crossings and who occludes whom (depth order
  ``z``) -- everything found goes into a :class:`TrajectoryReport`;
* turns trajectories into conditioning maps a video model can read through
  ``cond["concat"]``: Gaussian heatmaps ``(k, t, h, w)`` and flow-like displacement maps
  ``(2k, t, h, w)``;
* measures: a differentiable soft-argmax centroid of a foreground map, and the trajectory
  error in pixels between a requested path and the generated object's centroid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from einops import rearrange

__all__ = [
    "bezier", "bezier_bernstein", "interpolate_points", "stack_trajectories",
    "TrajectoryReport", "check_trajectories", "trajectory_heatmaps", "displacement_maps",
    "trajectory_maps", "render_discs", "foreground_map", "soft_centroid", "mask_centroids",
    "trajectory_error", "INTERPOLATIONS",
]

INTERPOLATIONS = ("linear", "catmull_rom")


# --------------------------------------------------------------------------- helpers
def _as_points(points, name: str = "points", min_points: int = 1) -> torch.Tensor:
    """Control points as a float tensor ``(m, 2)``; a clear error otherwise."""
    p = torch.as_tensor(points, dtype=torch.float32)
    if p.ndim != 2 or p.shape[-1] != 2:
        raise ValueError(f"{name}: expected control points of shape (m, 2) as (x, y) pixels, "
                         f"got shape {tuple(p.shape)}")
    if p.shape[0] < min_points:
        raise ValueError(f"{name}: expected at least {min_points} control points, got {p.shape[0]}")
    if not torch.isfinite(p).all():
        raise ValueError(f"{name}: control points must be finite numbers (no NaN/inf)")
    return p


def _params(frames) -> torch.Tensor:
    """Curve parameters ``s`` in [0, 1]: ``frames`` evenly spaced values, or a given 1-D tensor."""
    if isinstance(frames, int):
        if frames < 1:
            raise ValueError(f"frames: expected a positive number of frames, got {frames}")
        return torch.linspace(0.0, 1.0, frames) if frames > 1 else torch.zeros(1)
    s = torch.as_tensor(frames, dtype=torch.float32)
    if s.ndim != 1:
        raise ValueError(f"frames: expected an int or a 1-D tensor of parameters, got shape "
                         f"{tuple(s.shape)}")
    if (s < 0).any() or (s > 1).any():
        raise ValueError("frames: curve parameters must lie in [0, 1]")
    return s


# --------------------------------------------------------------------------- Bezier curves
def bezier(points, frames=16, order: int | None = None) -> torch.Tensor:
    """Bezier curve through its control points by de Casteljau's algorithm.

    points: ``(n + 1, 2)`` control points ``(x, y)``; the curve has order ``n``.
    frames: number of frames (parameters evenly spaced in [0, 1]) or a 1-D tensor of ``s``.
    order: optional expected order; fewer than ``order + 1`` points is an error (a cubic
    needs 4 points) -- extra points are an error too, so a typo does not silently change
    the curve. Returns ``(t, 2)``.

    de Casteljau repeatedly interpolates neighbouring points, ``p_i <- (1-s) p_i + s p_{i+1}``,
    until one point is left; it is numerically stable for any order, unlike evaluating the
    Bernstein polynomials with large binomial coefficients.
    """
    p = _as_points(points, "points", min_points=2)
    if order is not None:
        if order < 1:
            raise ValueError(f"order: expected a curve order >= 1, got {order}")
        if p.shape[0] != order + 1:
            raise ValueError(f"points: a Bezier curve of order {order} needs exactly {order + 1} "
                             f"control points, got {p.shape[0]}")
    s = _params(frames)[:, None, None]                       # (t, 1, 1)
    pts = p[None].expand(s.shape[0], -1, -1)                  # (t, n+1, 2)
    while pts.shape[1] > 1:
        pts = (1 - s) * pts[:, :-1] + s * pts[:, 1:]
    return pts[:, 0]


def bezier_bernstein(points, frames=16) -> torch.Tensor:
    """The same curve in Bernstein form ``sum_i C(n,i) s^i (1-s)^(n-i) p_i``. Returns ``(t, 2)``."""
    p = _as_points(points, "points", min_points=2).double()
    n = p.shape[0] - 1
    s = _params(frames).double()[:, None]                     # (t, 1)
    i = torch.arange(n + 1, dtype=torch.float64)[None]        # (1, n+1)
    binom = torch.tensor([math.comb(n, j) for j in range(n + 1)], dtype=torch.float64)[None]
    basis = binom * s**i * (1 - s) ** (n - i)                 # (t, n+1)
    return (basis @ p).float()


# --------------------------------------------------------------------------- sparse points
def interpolate_points(points, frames: int = 16, times=None, method: str = "catmull_rom"
                       ) -> torch.Tensor:
    """Dense trajectory ``(frames, 2)`` through sparse control points.

    points: ``(m, 2)`` positions the object must pass through. times: the frame index of each
    point (increasing; default evenly spread from 0 to ``frames - 1``). method: ``"linear"``
    (piecewise straight, speed jumps at each point) or ``"catmull_rom"`` (a C1 cubic spline
    through the points, endpoints duplicated, so speed changes smoothly). Frames before the
    first / after the last time hold the end positions.
    """
    if method not in INTERPOLATIONS:
        raise ValueError(f"method: expected one of {INTERPOLATIONS}, got {method!r}")
    p = _as_points(points, "points", min_points=2)
    m = p.shape[0]
    if times is None:
        tk = torch.linspace(0, frames - 1, m)
    else:
        tk = torch.as_tensor(times, dtype=torch.float32)
        if tk.shape != (m,):
            raise ValueError(f"times: expected one frame index per control point ({m}), got "
                             f"shape {tuple(tk.shape)}")
        if (tk[1:] <= tk[:-1]).any():
            raise ValueError("times: frame indices of control points must strictly increase")
    f = torch.arange(frames, dtype=torch.float32).clamp(float(tk[0]), float(tk[-1]))
    seg = (torch.searchsorted(tk, f, right=True) - 1).clamp(0, m - 2)   # segment per frame
    u = ((f - tk[seg]) / (tk[seg + 1] - tk[seg]))[:, None]              # local parameter
    p1, p2 = p[seg], p[seg + 1]
    if method == "linear":
        return (1 - u) * p1 + u * p2
    pad = torch.cat([p[:1], p, p[-1:]])                                # duplicate endpoints
    p0, p3 = pad[seg], pad[seg + 3]
    # Uniform Catmull-Rom: tangents (p2 - p0) / 2 and (p3 - p1) / 2 at the segment ends.
    u2, u3 = u * u, u * u * u
    return 0.5 * ((2 * p1) + (-p0 + p2) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u2
                  + (-p0 + 3 * p1 - 3 * p2 + p3) * u3)


def stack_trajectories(trajs) -> torch.Tensor:
    """Independent per-object trajectories ``[(t, 2), ...]`` -> one tensor ``(k, t, 2)``."""
    trajs = [torch.as_tensor(x, dtype=torch.float32) for x in trajs]
    if not trajs:
        raise ValueError("trajs: expected at least one trajectory")
    for i, x in enumerate(trajs):
        if x.ndim != 2 or x.shape[-1] != 2:
            raise ValueError(f"trajs[{i}]: expected shape (t, 2), got {tuple(x.shape)}")
        if x.shape[0] != trajs[0].shape[0]:
            raise ValueError(f"trajs[{i}]: has {x.shape[0]} frames but trajs[0] has "
                             f"{trajs[0].shape[0]}; all objects need the same number of frames")
    return torch.stack(trajs)


def _as_traj(traj, name: str = "traj") -> torch.Tensor:
    x = torch.as_tensor(traj, dtype=torch.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[-1] != 2:
        raise ValueError(f"{name}: expected a trajectory (k, t, 2) or (t, 2) of (x, y) pixels, "
                         f"got shape {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------- checking
@dataclass
class TrajectoryReport:
    """What :func:`check_trajectories` found.

    feasible: False when a hard constraint cannot be met (speed limit, ``no_overlap``).
    issues: human-readable lines, one per problem. clamped: points were moved into the frame
    (``out_of_frame="clamp"``); ``clamped_points`` counts them. speeds: max px/frame per
    object. crossings: ``(i, j, frame, front)`` when discs of objects i and j overlap,
    ``front`` being the one drawn on top (larger ``z``). occluded: ``(k, t)`` bool, True where
    an object is (partly) hidden by a nearer one.
    """

    feasible: bool = True
    issues: list[str] = field(default_factory=list)
    clamped: bool = False
    clamped_points: int = 0
    speeds: list[float] = field(default_factory=list)
    crossings: list[tuple[int, int, int, int]] = field(default_factory=list)
    occluded: torch.Tensor | None = None

    def raise_if_infeasible(self) -> None:
        """Raise ``ValueError`` listing the issues when a hard constraint is violated."""
        if not self.feasible:
            raise ValueError("trajectory request cannot be met: " + "; ".join(self.issues))

    def __str__(self) -> str:
        head = "feasible" if self.feasible else "INFEASIBLE"
        lines = [f"TrajectoryReport: {head}, max speed per object "
                 f"{[round(s, 2) for s in self.speeds]} px/frame, {len(self.crossings)} "
                 f"overlapping (object, object, frame) events"]
        if self.clamped:
            lines.append(f"  clamped {self.clamped_points} points into the frame")
        lines += [f"  - {m}" for m in self.issues]
        return "\n".join(lines)


def check_trajectories(traj, size: int | tuple[int, int], *, z=None, radius: float = 4.0,
                       max_speed: float | None = None, no_overlap: bool = False,
                       out_of_frame: str = "error", strict: bool = False
                       ) -> tuple[torch.Tensor, TrajectoryReport]:
    """Validate a request ``traj (k, t, 2)`` for an ``h x w`` frame; return ``(traj, report)``.

    out_of_frame: ``"error"`` (ValueError naming object, frame and point) or ``"clamp"``
    (points moved to the nearest pixel inside the frame; the report says how many).
    z: depth order, one number per object, larger = nearer the camera (drawn on top); default
    ``0, 1, ...``. When two discs of ``radius`` overlap the nearer one occludes the other.
    max_speed: px/frame limit; faster steps make the request infeasible. no_overlap: two
    objects closer than ``2 * radius`` at the same frame make it infeasible (a hard
    constraint), instead of being an occlusion. strict: raise instead of reporting.
    """
    x = _as_traj(traj).clone()
    h, w = (size, size) if isinstance(size, int) else size
    k, t, _ = x.shape
    if out_of_frame not in ("error", "clamp"):
        raise ValueError(f"out_of_frame: expected 'error' or 'clamp', got {out_of_frame!r}")
    zz = torch.arange(k, dtype=torch.float32) if z is None else torch.as_tensor(z, dtype=torch.float32)
    if zz.shape != (k,):
        raise ValueError(f"z: expected one depth value per object ({k}), got shape {tuple(zz.shape)}")
    rep = TrajectoryReport()
    valid = torch.isfinite(x).all(-1)                          # (k, t): NaN = object absent
    lo = torch.zeros(2)
    hi = torch.tensor([w - 1.0, h - 1.0])
    outside = valid & ((x < lo) | (x > hi)).any(-1)
    if outside.any():
        i, f = (int(v) for v in outside.nonzero()[0])
        if out_of_frame == "error":
            raise ValueError(
                f"traj: object {i} at frame {f} is at (x={x[i, f, 0]:.1f}, y={x[i, f, 1]:.1f}), "
                f"outside the {w}x{h} frame (x in [0, {w - 1}], y in [0, {h - 1}]); move it "
                f"inside or pass out_of_frame='clamp'")
        rep.clamped, rep.clamped_points = True, int(outside.sum())
        x = torch.where(valid[..., None], torch.minimum(torch.maximum(x, lo), hi), x)
        rep.issues.append(f"{rep.clamped_points} points were outside the {w}x{h} frame and "
                          f"were clamped to its border")
    step = (x[:, 1:] - x[:, :-1]).norm(dim=-1)                  # (k, t-1)
    step = torch.nan_to_num(step, nan=0.0)
    rep.speeds = [float(s.max()) if t > 1 else 0.0 for s in step]
    if max_speed is not None:
        for i, s in enumerate(rep.speeds):
            if s > max_speed + 1e-6:
                f = int(step[i].argmax())
                rep.feasible = False
                rep.issues.append(f"object {i} moves {s:.1f} px/frame between frames {f} and "
                                  f"{f + 1}, above max_speed={max_speed} px/frame")
    occluded = torch.zeros(k, t, dtype=torch.bool)
    for i in range(k):
        for j in range(i + 1, k):
            d = (x[i] - x[j]).norm(dim=-1)                      # (t,)
            hit = (d < 2 * radius) & valid[i] & valid[j]
            if not hit.any():
                continue
            front, back = (i, j) if zz[i] > zz[j] else (j, i)
            for f in hit.nonzero().flatten().tolist():
                rep.crossings.append((i, j, f, front))
            occluded[back] |= hit
            if no_overlap:
                frames = hit.nonzero().flatten().tolist()
                rep.feasible = False
                rep.issues.append(f"objects {i} and {j} are closer than {2 * radius:.0f} px at "
                                  f"frames {frames} but no_overlap=True")
            elif zz[i] == zz[j]:
                rep.issues.append(f"objects {i} and {j} overlap with equal depth z={float(zz[i])}; "
                                  f"object {front} is drawn on top (later index wins)")
    rep.occluded = occluded
    if strict:
        rep.raise_if_infeasible()
    return x, rep


# --------------------------------------------------------------------------- conditioning maps
def _grid(h: int, w: int, device=None):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32, device=device),
                            torch.arange(w, dtype=torch.float32, device=device), indexing="ij")
    return xx, yy


def trajectory_heatmaps(traj, size: int | tuple[int, int], sigma: float = 2.0) -> torch.Tensor:
    """Gaussian heatmaps ``(k, t, h, w)`` in [0, 1], peak 1 at each object's centre.

    A NaN position (object absent at that frame) gives an all-zero map.
    """
    x = _as_traj(traj)
    h, w = (size, size) if isinstance(size, int) else size
    if sigma <= 0:
        raise ValueError(f"sigma: expected a positive width in pixels, got {sigma}")
    xx, yy = _grid(h, w, x.device)
    cx = x[..., 0, None, None]
    cy = x[..., 1, None, None]                                  # (k, t, 1, 1)
    g = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return torch.nan_to_num(g, nan=0.0)


def displacement_maps(traj, size: int | tuple[int, int], sigma: float = 3.0) -> torch.Tensor:
    """Flow-like maps ``(2k, t, h, w)``: around each object, its step to the next frame.

    Channels ``2i, 2i+1`` hold ``(dx, dy) / size`` of object ``i`` (so values are small and
    resolution independent), weighted by a Gaussian around its current centre; the last
    frame repeats the previous step (the object keeps moving).
    """
    x = _as_traj(traj)
    h, w = (size, size) if isinstance(size, int) else size
    k, t, _ = x.shape
    d = torch.zeros_like(x)
    if t > 1:
        d[:, :-1] = x[:, 1:] - x[:, :-1]
        d[:, -1] = d[:, -2]
    d = torch.nan_to_num(d, nan=0.0) / max(h, w)
    g = trajectory_heatmaps(x, (h, w), sigma)                   # (k, t, h, w)
    maps = g[:, None] * d.permute(0, 2, 1)[..., None, None]     # (k, 2, t, h, w)
    return rearrange(maps, "k c t h w -> (k c) t h w")


def trajectory_maps(traj, size, kind: str = "heatmap", sigma: float = 2.0) -> torch.Tensor:
    """Conditioning maps for ``cond["concat"]``: ``"heatmap"`` ``(k, t, h, w)``,
    ``"displacement"`` ``(2k, t, h, w)`` or ``"both"`` ``(3k, t, h, w)``."""
    if kind == "heatmap":
        return trajectory_heatmaps(traj, size, sigma)
    if kind == "displacement":
        return displacement_maps(traj, size, sigma)
    if kind == "both":
        return torch.cat([trajectory_heatmaps(traj, size, sigma),
                          displacement_maps(traj, size, sigma)])
    raise ValueError(f"kind: expected 'heatmap', 'displacement' or 'both', got {kind!r}")


def render_discs(traj, size: int | tuple[int, int], radius: float = 4.0, colors=None, z=None,
                 background=(-1.0, -1.0, -1.0)) -> torch.Tensor:
    """Draw each object as a disc -> video ``(3, t, h, w)`` in [-1, 1], nearest (largest z) on top.

    An "ideal generator" for a trajectory request: it shows what the requested motion and
    occlusion order look like, and gives a clip whose centroid path is known exactly.
    """
    x = _as_traj(traj)
    h, w = (size, size) if isinstance(size, int) else size
    k, t, _ = x.shape
    default = [(1.0, -1.0, -1.0), (-1.0, 1.0, -1.0), (-1.0, -1.0, 1.0), (1.0, 1.0, -1.0)]
    cols = torch.tensor(colors if colors is not None else [default[i % 4] for i in range(k)],
                        dtype=torch.float32)
    zz = torch.arange(k, dtype=torch.float32) if z is None else torch.as_tensor(z, dtype=torch.float32)
    video = torch.tensor(background, dtype=torch.float32)[:, None, None, None].expand(3, t, h, w).clone()
    xx, yy = _grid(h, w)
    for i in sorted(range(k), key=lambda j: (float(zz[j]), j)):  # far first, near last
        cx, cy = x[i, :, 0, None, None], x[i, :, 1, None, None]
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2)    # NaN compares False: absent
        video = torch.where(disc[None], cols[i][:, None, None, None], video)
    return video


# --------------------------------------------------------------------------- measuring
def foreground_map(video: torch.Tensor, color=None, sharpness: float = 8.0) -> torch.Tensor:
    """Soft foreground ``(b, t, h, w)`` in [0, 1] for a video ``(b, 3, t, h, w)``.

    With ``color`` (an RGB triple in [-1, 1]): closeness to that colour -- picks one object.
    Without: distance from the clip's temporal median per pixel (the static background);
    fine for moving objects on a still camera. Differentiable, so it also serves guidance.
    """
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video: expected (b, 3, t, h, w), got shape {tuple(video.shape)}")
    if color is not None:
        c = torch.as_tensor(color, dtype=video.dtype, device=video.device).view(1, 3, 1, 1, 1)
        dist = (video - c).norm(dim=1) / (2 * math.sqrt(3))   # in [0, 1]
        return torch.sigmoid(sharpness * (0.25 - dist) * 4)
    bg = video.median(dim=2, keepdim=True).values
    dist = (video - bg).norm(dim=1) / (2 * math.sqrt(3))
    return torch.sigmoid(sharpness * (dist - 0.1) * 4)


def soft_centroid(fg: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Differentiable centroid ``(b, t, 2)`` (x, y) of a non-negative map ``(b, t, h, w)``.

    The weighted mean of pixel coordinates ("soft-argmax" of the map itself); gradients flow
    back to every pixel, which is what physics- or trajectory-guided sampling needs.
    """
    if fg.ndim != 4:
        raise ValueError(f"fg: expected a foreground map (b, t, h, w), got shape {tuple(fg.shape)}")
    h, w = fg.shape[-2:]
    xx, yy = _grid(h, w, fg.device)
    mass = fg.sum(dim=(-2, -1)) + eps
    cx = (fg * xx).sum(dim=(-2, -1)) / mass
    cy = (fg * yy).sum(dim=(-2, -1)) / mass
    return torch.stack([cx, cy], dim=-1)


def mask_centroids(masks: torch.Tensor) -> torch.Tensor:
    """Centroids ``(..., t, 2)`` of boolean masks ``(..., t, h, w)``; NaN where a mask is empty."""
    m = masks.float()
    h, w = m.shape[-2:]
    xx, yy = _grid(h, w, m.device)
    mass = m.sum(dim=(-2, -1))
    cx = (m * xx).sum(dim=(-2, -1)) / mass
    cy = (m * yy).sum(dim=(-2, -1)) / mass
    out = torch.stack([cx, cy], dim=-1)
    return torch.where((mass > 0)[..., None], out, torch.full_like(out, float("nan")))


def trajectory_error(requested, measured) -> float:
    """Mean Euclidean distance in pixels between ``requested`` and ``measured`` ``(..., t, 2)``.

    Frames where either is NaN (object absent / not found) are skipped; all NaN -> NaN.
    """
    a = torch.as_tensor(requested, dtype=torch.float32)
    b = torch.as_tensor(measured, dtype=torch.float32)
    if a.shape != b.shape:
        raise ValueError(f"requested {tuple(a.shape)} and measured {tuple(b.shape)} trajectories "
                         f"must have the same shape (..., t, 2)")
    d = (a - b).norm(dim=-1)
    ok = torch.isfinite(d)
    return float(d[ok].mean()) if ok.any() else float("nan")
