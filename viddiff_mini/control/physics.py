"""Physics constraints and realism (section 11.3.6 物理约束与真实感).

Measured, from trajectories (ground truth or extracted from a generated clip):

* :func:`fit_gravity` -- least squares on the vertical positions between bounces: one
  parabola per flight segment ``y = a_s + b_s f + g f^2 / 2`` with a **shared** ``g``
  (px/frame^2). On ground-truth MovingShapes bounce/throw clips it recovers the true g.
* :func:`detect_bounces`, :func:`restitution` -- bounce frames (local maxima of y, image y
  grows downward) and the speed ratio after/before each bounce (energy ratio = e^2).
* :func:`momentum_change` -- relative change of total horizontal momentum across a collision.
* :func:`interpenetration` -- how deep two objects (discs) overlap, per frame.
* :func:`physics_residual` -- all of the above for one clip, against the true parameters.

Guided sampling: :func:`physics_guidance_hook` is an ``x0_hook``. At each sampling step it
takes the predicted clean clip, finds the object's centroid track with a differentiable
soft centroid of a foreground map, scores deviation from constant-acceleration motion
(:func:`constant_accel_penalty`, Huber so that bounces are tolerated) and takes a gradient
step on x0. :func:`compare_guidance` samples with and without it and measures both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .trajectory import foreground_map, mask_centroids, soft_centroid

__all__ = ["detect_bounces", "flight_segments", "fit_gravity", "restitution", "momentum_change",
           "interpenetration", "physics_residual", "constant_accel_penalty",
           "physics_guidance_hook", "extract_track", "compare_guidance"]


def _as_y(traj) -> torch.Tensor:
    x = torch.as_tensor(traj, dtype=torch.float64)
    if x.ndim == 2 and x.shape[-1] == 2:
        x = x[:, 1]
    if x.ndim != 1:
        raise ValueError(f"traj: expected a trajectory (t, 2) or vertical positions (t,), got "
                         f"shape {tuple(x.shape)}")
    return x


def detect_bounces(traj, min_speed: float = 0.5) -> list[int]:
    """Frames where the object hits a floor: y stops increasing (falling) and starts decreasing.

    traj ``(t, 2)`` or ``(t,)`` vertical positions (px, y down). ``min_speed`` (px/frame):
    the fall before and the rise after must both exceed it, so rolling and jitter don't count.
    """
    y = _as_y(traj)
    out = []
    for f in range(1, len(y) - 1):
        if not torch.isfinite(y[f - 1:f + 2]).all():
            continue
        if y[f] - y[f - 1] > min_speed and y[f + 1] - y[f] < -min_speed * 0.5 and y[f] >= y[f + 1]:
            out.append(f)
    return out


def flight_segments(traj, bounces: list[int] | None = None, still_tol: float = 0.3
                    ) -> list[tuple[int, int]]:
    """Inclusive frame ranges of free flight: between bounces, bounce frames excluded,
    frames where the object rests on the floor (|vy| < ``still_tol``, e.g. rolling) excluded,
    NaN frames excluded. Only ranges with >= 3 frames (enough to see curvature) are kept."""
    y = _as_y(traj)
    t = len(y)
    bounces = detect_bounces(y) if bounces is None else list(bounces)
    cuts = [-1, *bounces, t]
    segs = []
    vy = torch.zeros(t, dtype=torch.float64)
    vy[1:] = (y[1:] - y[:-1]).abs()
    for a, b in zip(cuts[:-1], cuts[1:]):
        lo, hi = a + 1, b - 1
        frames = [f for f in range(lo, hi + 1) if torch.isfinite(y[f])]
        # drop a resting tail: consecutive frames with no vertical motion at the end
        while len(frames) >= 2 and abs(float(y[frames[-1]] - y[frames[-2]])) < still_tol:
            frames.pop()
        if len(frames) >= 3:
            segs.append((frames[0], frames[-1]))
    return segs


def fit_gravity(traj, bounces: list[int] | None = None) -> float:
    """Gravity in px/frame^2 from vertical positions by least squares (shared over segments).

    Returns NaN when no flight segment has >= 3 frames.
    """
    y = _as_y(traj)
    segs = flight_segments(y, bounces)
    if not segs:
        return float("nan")
    rows, rhs = [], []
    n = len(segs)
    for s, (lo, hi) in enumerate(segs):
        for f in range(lo, hi + 1):
            r = torch.zeros(2 * n + 1, dtype=torch.float64)
            r[2 * s], r[2 * s + 1], r[-1] = 1.0, float(f), 0.5 * f * f
            rows.append(r)
            rhs.append(y[f])
    A, b = torch.stack(rows), torch.stack(rhs)
    sol = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    return float(sol[-1])


def restitution(traj, g: float | None = None) -> list[float]:
    """Coefficient of restitution at each bounce: |vy after| / |vy before|.

    Velocities come from the fitted flight parabolas (shared g) evaluated at the bounce
    frame, which is robust to the impact falling between two frames.
    """
    y = _as_y(traj)
    bounces = detect_bounces(y)
    segs = flight_segments(y, bounces)
    if not bounces or len(segs) < 2:
        return []
    g = fit_gravity(y, bounces) if g is None else g
    out = []
    for fb in bounces:
        before = [s for s in segs if s[1] < fb]
        after = [s for s in segs if s[0] > fb]
        if not before or not after:
            continue
        vb = _segment_velocity(y, before[-1], g, fb)
        va = _segment_velocity(y, after[0], g, fb)
        if abs(vb) > 1e-6:
            out.append(abs(va) / abs(vb))
    return out


def _segment_velocity(y, seg, g, at):
    """Fit y = a + b f + g f^2 / 2 (g fixed) on ``seg``; velocity b + g * at."""
    f = torch.arange(seg[0], seg[1] + 1, dtype=torch.float64)
    r = y[seg[0]:seg[1] + 1] - 0.5 * g * f * f
    A = torch.stack([torch.ones_like(f), f], 1)
    a, b = torch.linalg.lstsq(A, r[:, None]).solution[:, 0]
    return float(b + g * at)


def momentum_change(traj_a, traj_b, mass_a: float = 1.0, mass_b: float = 1.0,
                    collision: int | None = None, window: int = 3) -> float:
    """Relative change of total horizontal momentum across a collision (0 = conserved).

    traj_a, traj_b ``(t, 2)``. collision: frame of contact (default: closest approach).
    Velocities are mean x-steps over ``window`` frames before and after (skipping 1 frame
    each side of contact).
    """
    a = torch.as_tensor(traj_a, dtype=torch.float64)
    b = torch.as_tensor(traj_b, dtype=torch.float64)
    if collision is None:
        collision = int((a - b).norm(dim=-1).nan_to_num(1e9).argmin())

    def vel(tr, lo, hi):
        lo, hi = max(lo, 0), min(hi, tr.shape[0] - 1)
        if hi <= lo:
            return float("nan")
        return float((tr[hi, 0] - tr[lo, 0]) / (hi - lo))

    before = mass_a * vel(a, collision - 1 - window, collision - 1) + \
        mass_b * vel(b, collision - 1 - window, collision - 1)
    after = mass_a * vel(a, collision + 1, collision + 1 + window) + \
        mass_b * vel(b, collision + 1, collision + 1 + window)
    scale = max(abs(mass_a * vel(a, collision - 1 - window, collision - 1)),
                abs(mass_b * vel(b, collision - 1 - window, collision - 1)), 1e-6)
    return abs(after - before) / scale


def interpenetration(traj, radii) -> torch.Tensor:
    """Overlap depth ``(t,)`` in px of two discs: ``max(0, r_a + r_b - |c_a - c_b|)``.

    traj ``(2, t, 2)`` centres; radii ``(2,)`` px. Solid objects should give zeros.
    """
    tr = torch.as_tensor(traj, dtype=torch.float32)
    if tr.ndim != 3 or tr.shape[0] != 2 or tr.shape[-1] != 2:
        raise ValueError(f"traj: expected two trajectories (2, t, 2), got {tuple(tr.shape)}")
    r = torch.as_tensor(radii, dtype=torch.float32)
    d = (tr[0] - tr[1]).norm(dim=-1)
    return torch.nan_to_num((r.sum() - d).clamp_min(0), nan=0.0)


def physics_residual(traj, physics: dict | None = None) -> dict:
    """Physics measurements of one object's trajectory ``(t, 2)`` vs ground truth ``physics``.

    Returns ``g_fit``, ``g_true``, ``g_rel_error`` (|g_fit - g_true| / g_true), ``bounces``,
    ``restitution_fit``, ``restitution_true``, ``energy_ratio`` (mean e^2 at bounces) and
    ``accel_rms`` (RMS residual of the flight-parabola fit, px).
    """
    y = _as_y(traj)
    g = fit_gravity(y)
    e = restitution(y, g if g == g else None) if g == g else []
    out = {"g_fit": g, "bounces": detect_bounces(y), "restitution_fit": e,
           "energy_ratio": float(sum(v * v for v in e) / len(e)) if e else float("nan")}
    segs = flight_segments(y)
    res = []
    for lo, hi in segs:
        if g == g:
            f = torch.arange(lo, hi + 1, dtype=torch.float64)
            r = y[lo:hi + 1] - 0.5 * g * f * f
            A = torch.stack([torch.ones_like(f), f], 1)
            sol = torch.linalg.lstsq(A, r[:, None]).solution[:, 0]
            res.append(r - A @ sol)
    out["accel_rms"] = float(torch.cat(res).pow(2).mean().sqrt()) if res else float("nan")
    if physics:
        gt = float(physics.get("gravity", 0.0))
        out["g_true"] = gt
        out["g_rel_error"] = abs(g - gt) / gt if gt > 0 and g == g else float("nan")
        out["restitution_true"] = float(physics.get("restitution", float("nan")))
    return out


# --------------------------------------------------------------------------- guidance
def constant_accel_penalty(track: torch.Tensor, g: float | None = None, delta: float = 1.0
                           ) -> torch.Tensor:
    """Differentiable penalty on deviation from constant-acceleration motion.

    track ``(b, t, 2)`` (x, y) px. Second differences ``a_f`` (px/frame^2) should be constant:
    equal to ``(0, g)`` when ``g`` is given, else to their own mean over the clip. Huber with
    ``delta`` px/frame^2, so a few large impulses (bounces) cost linearly, not quadratically.
    Scalar (mean over batch, frames and axes).
    """
    if track.ndim != 3 or track.shape[-1] != 2:
        raise ValueError(f"track: expected (b, t, 2), got {tuple(track.shape)}")
    if track.shape[1] < 3:
        raise ValueError("track: need at least 3 frames for an acceleration")
    a = track[:, 2:] - 2 * track[:, 1:-1] + track[:, :-2]
    if g is None:
        target = a.mean(dim=1, keepdim=True)
    else:
        target = torch.tensor([0.0, float(g)], dtype=a.dtype, device=a.device).view(1, 1, 2)
    return F.huber_loss(a, target.expand_as(a), delta=delta)


def extract_track(video: torch.Tensor, color=None, masks: torch.Tensor | None = None) -> torch.Tensor:
    """Centroid track ``(b, t, 2)`` of the object in ``video (b, 3, t, h, w)``.

    masks ``(b, k, t, h, w)``: object 0's mask centroids (ground truth). Otherwise the
    centroid of the thresholded foreground map (by ``color`` if given).
    """
    if masks is not None:
        return mask_centroids(masks[:, 0].bool())
    fg = foreground_map(video, color)
    return mask_centroids(fg > 0.5)


def physics_guidance_hook(scale: float = 1.0, g: float | None = None, color=None,
                          t_range: tuple[float, float] = (0.0, 1.0), iters: int = 1,
                          inner=None):
    """``x0_hook`` nudging the predicted clip toward constant-acceleration motion.

    At sampling time t in ``t_range`` the hook computes ``L = constant_accel_penalty(
    soft_centroid(foreground_map(x0, color)), g)`` and steps ``x0 <- x0 - scale * dL/dx0 /
    max|dL/dx0|`` (normalised, so ``scale`` is the largest pixel change per step). The
    gradient is taken with respect to x0 itself, so it works with any model and with
    ``Diffusion.sample(..., grad=False)``.
    """
    def hook(x0: torch.Tensor, t: float, x_t: torch.Tensor | None = None) -> torch.Tensor:
        if inner is not None:
            x0 = inner(x0, t, x_t)
        if not t_range[0] <= float(t) <= t_range[1] or scale == 0:
            return x0
        z = x0.detach()
        for _ in range(iters):
            with torch.enable_grad():
                z = z.requires_grad_(True)
                track = soft_centroid(foreground_map(z, color))
                loss = constant_accel_penalty(track, g)
                (grad,) = torch.autograd.grad(loss, z)
            norm = grad.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, 1, 1, 1, 1)
            z = (z.detach() - scale * grad / norm).clamp(-1, 1)
        return z

    return hook


def compare_guidance(model, diffusion, shape, cond=None, scale: float = 0.5, g: float | None = None,
                     color=None, steps: int = 20, seed: int = 0, true_g: float | None = None) -> dict:
    """Sample the same noise with and without physics guidance; fit gravity on both.

    Returns ``{"unguided": {...}, "guided": {...}, "videos": (unguided, guided)}`` where each
    dict has ``g_fit`` per clip, ``penalty`` and (when ``true_g``) ``g_rel_error``.
    """
    out = {}
    vids = []
    for name, hook in (("unguided", None), ("guided", physics_guidance_hook(scale, g, color))):
        gen = torch.Generator().manual_seed(seed)
        v = diffusion.sample(model, shape, cond=cond, steps=steps, generator=gen, x0_hook=hook)
        vids.append(v)
        track = extract_track(v, color)
        gs = [fit_gravity(tr) for tr in track]
        rec = {"g_fit": gs, "penalty": float(constant_accel_penalty(
            torch.nan_to_num(track), g))}
        if true_g:
            rec["g_rel_error"] = [abs(x - true_g) / true_g if x == x else float("nan") for x in gs]
        out[name] = rec
    out["videos"] = tuple(vids)
    return out
