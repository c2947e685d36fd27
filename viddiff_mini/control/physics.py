"""Physics constraints and realism (section 11.3.6 物理约束与真实感).

Measured, from trajectories (ground truth or extracted from a generated clip):

* :func:`fit_gravity` -- least squares on the vertical positions between bounces: one
  parabola per flight segment ``y = a_s + b_s f + g f^2 / 2`` with a **shared** ``g``
  (px/frame^2), over the flight segments that agree (robust to impacts between frames).
  On ground-truth MovingShapes bounce/throw clips of >= 16 frames it recovers the true g
  to float precision (fewer frames leave too few clean flights: NaN or a rough value).
* :func:`detect_bounces`, :func:`restitution` -- bounce frames (local maxima of y, image y
  grows downward) and the speed ratio after/before each bounce (energy ratio = e^2),
  from the impact time where the two fitted flight parabolas meet.
* :func:`momentum_change` -- relative change of total horizontal momentum across a collision.
* :func:`interpenetration` -- how deep two objects (discs) overlap, per frame.
* :func:`physics_residual` -- all of the above for one clip, against the true parameters.

Guided sampling: :func:`physics_guidance_hook` is an ``x0_hook``. At each sampling step it
takes the predicted clean clip, finds the object's centroid track with a differentiable
soft centroid of a foreground map, scores deviation from constant-acceleration motion
(:func:`constant_accel_penalty`, Huber so that bounces are tolerated) and takes a gradient
step on x0 -- the gradient taken on x0 itself (``mode="x0"``) or through the network with
respect to x_t (``mode="xt"``, with ``Diffusion.sample(grad=True)``).
:func:`compare_guidance` samples with and without it from the same noise and measures both.

Planned motion (simulate, then render, as PhysGen does with a rigid-body simulator):
:func:`ballistic_path` is the path a thrown or bouncing object takes under a requested
gravity, which a trajectory-conditioned generator (``msh-trajectory``) is then asked to
follow -- the physics lives in the plan, the generator only has to draw it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .trajectory import foreground_map, mask_centroids, soft_centroid

__all__ = ["detect_bounces", "flight_segments", "fit_gravity", "restitution", "momentum_change",
           "interpenetration", "physics_residual", "constant_accel_penalty", "physics_penalty",
           "physics_guidance_hook", "extract_track", "compare_guidance", "GUIDANCE_MODES",
           "ballistic_path"]


def _as_y(traj) -> torch.Tensor:
    x = torch.as_tensor(traj, dtype=torch.float64)
    if x.ndim == 2 and x.shape[-1] == 2:
        x = x[:, 1]
    if x.ndim != 1:
        raise ValueError(f"traj: expected a trajectory (t, 2) or vertical positions (t,), got "
                         f"shape {tuple(x.shape)}")
    return x


def detect_bounces(traj, min_rise: float = 0.1) -> list[int]:
    """Frames where the object hits a floor: local maxima of y (image y grows downward).

    traj ``(t, 2)`` or ``(t,)`` vertical positions (px). Frame f is a bounce when
    ``y[f] >= y[f-1]`` (it was falling or level) and ``y[f] - y[f+1] > min_rise`` (it then
    rises). The impact happens between f-1 and f+1, so frame f is the one frame that may lie
    on either flight parabola -- :func:`flight_segments` leaves it out. Rolling or resting
    (y constant) is never a bounce. ``min_rise`` (px) ignores jitter of measured tracks.
    """
    y = _as_y(traj)
    out = []
    for f in range(1, len(y) - 1):
        if not torch.isfinite(y[f - 1:f + 2]).all():
            continue
        if y[f] >= y[f - 1] and y[f] - y[f + 1] > min_rise:
            out.append(f)
    return out


def _resting(y: torch.Tensor, still_tol: float) -> torch.Tensor:
    """(t,) bool: frames where the object rests or rolls on the floor (no vertical motion
    next to it, at the lowest point of the clip): not free flight."""
    t = len(y)
    floor = torch.nan_to_num(y, nan=-1e9).max()
    dy = torch.full((t + 1,), float("inf"), dtype=y.dtype)
    dy[1:t] = (y[1:] - y[:-1]).abs()
    still = torch.nan_to_num(torch.minimum(dy[:-1], dy[1:]), nan=float("inf")) < still_tol
    return still & ((floor - y).abs() < max(still_tol, 0.5))


def flight_segments(traj, bounces: list[int] | None = None, still_tol: float = 0.3,
                    neg_tol: float = 0.5) -> list[tuple[int, int]]:
    """Inclusive frame ranges of free flight, each (ideally) on one parabola.

    A frame is left out when it is a bounce frame, NaN, resting / rolling on the floor
    (``|dy| < still_tol`` px at the lowest height), or the middle of a window whose second
    difference ``y[f+1] - 2 y[f] + y[f-1] < -neg_tol`` px/frame^2: gravity only accelerates
    downward (+y), so an upward kick means an impact between f-1 and f+1 -- this catches
    bounces that happen *between* frames without y ever decreasing. Only ranges with >= 3
    frames (enough to see curvature) are kept.
    """
    y = _as_y(traj)
    t = len(y)
    bounces = detect_bounces(y) if bounces is None else list(bounces)
    cut = ~torch.isfinite(y) | _resting(y, still_tol)
    for f in bounces:
        cut[f] = True
    if t >= 3:
        acc = y[2:] - 2 * y[1:-1] + y[:-2]
        cut[1:-1] |= torch.nan_to_num(acc, nan=0.0) < -neg_tol
    segs, start = [], None
    for f in range(t + 1):
        if f < t and not cut[f]:
            start = f if start is None else start
        elif start is not None:
            if f - start >= 3:
                segs.append((start, f - 1))
            start = None
    return segs


def _fit_segments(y: torch.Tensor, segs: list[tuple[int, int]]):
    """Least squares ``y = a_s + b_s f + g f^2 / 2`` with one shared g.
    Returns ``(g, [(a_s, b_s)], [rms residual per segment])``."""
    rows, rhs, owner = [], [], []
    n = len(segs)
    for s, (lo, hi) in enumerate(segs):
        for f in range(lo, hi + 1):
            r = torch.zeros(2 * n + 1, dtype=torch.float64)
            r[2 * s], r[2 * s + 1], r[-1] = 1.0, float(f), 0.5 * f * f
            rows.append(r)
            rhs.append(y[f])
            owner.append(s)
    A, b = torch.stack(rows), torch.stack(rhs)
    sol = torch.linalg.lstsq(A, b[:, None]).solution[:, 0]
    res = (A @ sol - b).abs()
    owner = torch.tensor(owner)
    rms = [float(res[owner == s].pow(2).mean().sqrt()) for s in range(n)]
    return float(sol[-1]), [(float(sol[2 * s]), float(sol[2 * s + 1])) for s in range(n)], rms


def _robust_segments(y: torch.Tensor, bounces, rel_tol: float):
    """Flight segments that agree on g, and their joint fit: ``(segs, g, coefs)``.

    Each segment gets its own parabola (its own g). A segment that spans an impact the
    cuts missed gives a wrong g, so we keep the largest *consensus*: the segments whose g
    lies within ``rel_tol`` (relative, at least 0.05 px/frame^2) of a candidate, weighted
    by their number of frames, then fit them jointly with one shared g. Segments that curve
    upward (own g <= 0) are impossible under gravity and never count.
    """
    segs = flight_segments(y, bounces)
    own = [_fit_segments(y, [s])[0] for s in segs]
    # gravity pulls toward +y: a segment curving the other way spans a hidden impact
    segs, own = [s for s, g in zip(segs, own) if g > 0], [g for g in own if g > 0]
    if not segs:
        return [], float("nan"), []
    lens = [hi - lo + 1 for lo, hi in segs]

    def agree(i, j):
        return abs(own[i] - own[j]) <= max(rel_tol * abs(own[i]), 0.05)

    support = [sum(lens[j] for j in range(len(segs)) if agree(i, j)) for i in range(len(segs))]
    best = max(range(len(segs)), key=lambda i: (support[i], lens[i]))
    keep = [s for j, s in enumerate(segs) if agree(best, j)]
    g, coefs, _ = _fit_segments(y, keep)
    return keep, g, coefs


def fit_gravity(traj, bounces: list[int] | None = None, rel_tol: float = 0.05) -> float:
    """Gravity in px/frame^2 from vertical positions (11.3.6), least squares.

    One parabola per flight segment (:func:`flight_segments`) with a **shared** g, over the
    segments that agree (``rel_tol``; raise it for noisy measured tracks). On ground-truth
    MovingShapes bounce / throw clips it recovers the true g to float precision. Returns NaN
    when no flight segment of >= 3 frames exists.
    """
    return _robust_segments(_as_y(traj), bounces, rel_tol)[1]


def restitution(traj, g: float | None = None, rel_tol: float = 0.05, max_gap: int = 3
                ) -> list[float]:
    """Coefficient of restitution at each bounce between two adjacent fitted flights:
    ``|v out| / |v in|``.

    The two flight parabolas around a bounce (shared g) meet at the impact: their
    difference is linear in time, so the impact time is where it vanishes, and the
    velocities are both parabolas' slopes there -- exact even when the impact falls
    between two frames. Flights more than ``max_gap`` left-out frames apart are skipped, and
    so is a pair whose meeting time is not inside the gap (another bounce hid there).
    ``g``: unused (the joint fit gives it).
    """
    y = _as_y(traj)
    segs, g_fit, coefs = _robust_segments(y, None, rel_tol)
    out = []
    for i in range(len(segs) - 1):
        end, nxt = segs[i][1], segs[i + 1][0]
        if nxt - end > max_gap + 1:             # too much unseen: another bounce may hide there
            continue
        (a1, b1), (a2, b2) = coefs[i], coefs[i + 1]
        if abs(b1 - b2) < 1e-9:
            continue
        tau = -(a1 - a2) / (b1 - b2)        # a1 + b1 tau = a2 + b2 tau (same g f^2 / 2 term)
        v_in, v_out = b1 + g_fit * tau, b2 + g_fit * tau
        # a real single bounce: the flights meet inside the gap, falling in (+y), rising out
        if end <= tau <= nxt and v_in > 1e-6 and v_out < 0:
            out.append(abs(v_out) / abs(v_in))
    return out


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


def physics_residual(traj, physics: dict | None = None, rel_tol: float = 0.05) -> dict:
    """Physics measurements of one object's trajectory ``(t, 2)`` vs ground truth ``physics``.

    Returns ``g_fit``, ``bounces``, ``restitution_fit``, ``energy_ratio`` (mean e^2 at
    bounces: the kinetic energy kept), ``accel_rms`` (RMS residual of the flight-parabola
    fit, px) and, with ``physics`` (a ``render_batch`` truth dict), ``g_true``,
    ``g_rel_error`` (|g_fit - g_true| / g_true) and ``restitution_true``.
    """
    y = _as_y(traj)
    bounces = detect_bounces(y)
    segs, g, coefs = _robust_segments(y, bounces, rel_tol)
    e = restitution(y, rel_tol=rel_tol) if segs else []
    out = {"g_fit": g, "bounces": bounces, "restitution_fit": e,
           "energy_ratio": float(sum(v * v for v in e) / len(e)) if e else float("nan")}
    out["accel_rms"] = float(torch.tensor(_fit_segments(y, segs)[2]).pow(2).mean().sqrt()) \
        if segs else float("nan")
    out["flights"] = segs
    if physics:
        gt = float(physics.get("gravity", 0.0))
        out["g_true"] = gt
        out["g_rel_error"] = abs(g - gt) / gt if gt > 0 and g == g else float("nan")
        out["restitution_true"] = float(physics.get("restitution", float("nan")))
    return out


# --------------------------------------------------------------------------- guidance
def constant_accel_penalty(track: torch.Tensor, g=None, delta: float = 1.0) -> torch.Tensor:
    """Differentiable penalty on deviation from constant-acceleration motion.

    track ``(b, t, 2)`` (x, y) px. Second differences ``a_f`` (px/frame^2) should be constant:
    equal to ``(0, g)`` when ``g`` is given (a float, or one per clip: a requested gravity
    per prompt), else to their own mean over the clip. Huber with ``delta`` px/frame^2, so a
    few large impulses (bounces) cost linearly, not quadratically. Scalar (mean over batch,
    frames and axes).
    """
    if track.ndim != 3 or track.shape[-1] != 2:
        raise ValueError(f"track: expected (b, t, 2), got {tuple(track.shape)}")
    if track.shape[1] < 3:
        raise ValueError("track: need at least 3 frames for an acceleration")
    a = track[:, 2:] - 2 * track[:, 1:-1] + track[:, :-2]
    if g is None:
        target = a.mean(dim=1, keepdim=True)
    else:
        gy = torch.as_tensor(g, dtype=a.dtype, device=a.device).reshape(-1)
        if gy.numel() not in (1, a.shape[0]):
            raise ValueError(f"g: expected one value or one per clip ({a.shape[0]}), "
                             f"got {gy.numel()}")
        target = torch.stack([torch.zeros_like(gy), gy], -1).view(-1, 1, 2)
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


def physics_penalty(x0: torch.Tensor, g=None, color=None) -> torch.Tensor:
    """The differentiable physics penalty of a clip ``x0 (b, 3, t, h, w)``: soft centroid of
    its foreground map -> :func:`constant_accel_penalty`. Scalar."""
    return constant_accel_penalty(soft_centroid(foreground_map(x0, color)), g)


GUIDANCE_MODES = ("x0", "xt")


def physics_guidance_hook(scale: float = 1.0, g=None, color=None,
                          t_range: tuple[float, float] = (0.0, 1.0), iters: int = 1,
                          inner=None, mode: str = "x0"):
    """``x0_hook`` nudging the predicted clip toward constant-acceleration motion (11.3.6).

    At sampling times t in ``t_range`` the hook scores ``L = physics_penalty(x0, g, color)``
    (soft centroid of the foreground -> :func:`constant_accel_penalty`) and moves x0 down its
    gradient, normalised so that ``scale`` is the largest change of any pixel per step:

    * ``mode="x0"``: ``x0 <- x0 - scale * dL/dx0 / max|dL/dx0|`` (``iters`` times). The
      gradient is taken on the prediction itself: cheap, any model, ``grad=False`` is fine.
    * ``mode="xt"``: the gradient is taken through the network, ``dL(x0(x_t))/dx_t``
      (universal-guidance / DPS style): it knows how the *denoiser* would react. Needs
      ``Diffusion.sample(..., grad=True)`` (raises a clear error otherwise).

    The sampler then re-derives eps from the edited x0, so the change carries over to the
    next step. ``inner``: another hook applied first (e.g. a first-frame or blending hook).
    """
    if mode not in GUIDANCE_MODES:
        raise ValueError(f"mode: expected one of {GUIDANCE_MODES}, got {mode!r}")

    def step(z, grad):
        norm = grad.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *([1] * (z.ndim - 1)))
        return (z.detach() - scale * grad / norm).clamp(-1, 1)

    def hook(x0: torch.Tensor, t: float, x_t: torch.Tensor | None = None) -> torch.Tensor:
        if inner is not None:
            x0 = inner(x0, t, x_t)
        if not t_range[0] <= float(t) <= t_range[1] or scale == 0:
            return x0.detach() if mode == "xt" else x0
        if mode == "xt":
            if x_t is None or not x_t.requires_grad or not x0.requires_grad:
                raise ValueError("mode='xt': the gradient flows through the model, so sample "
                                 "with Diffusion.sample(..., grad=True)")
            (grad,) = torch.autograd.grad(physics_penalty(x0, g, color), x_t)
            return step(x0, grad)
        z = x0.detach()
        for _ in range(iters):
            with torch.enable_grad():
                z = z.requires_grad_(True)
                (grad,) = torch.autograd.grad(physics_penalty(z, g, color), z)
            z = step(z, grad)
        return z

    return hook


def compare_guidance(model, diffusion, shape, cond=None, scale: float = 0.5, g: float | None = None,
                     color=None, steps: int = 20, seed: int = 0, true_g: float | None = None,
                     mode: str = "x0", rel_tol: float = 0.25, x0_hook=None,
                     autoencoder=None) -> dict:
    """Sample the same noise with and without physics guidance and measure both.

    shape ``(b, 3, t, h, w)``. ``x0_hook``: a hook used in *both* runs (e.g. first-frame
    replacement), so only the physics term differs. Returns ``{"unguided": {...},
    "guided": {...}, "videos": (unguided, guided)}`` where each dict has ``penalty`` (the
    soft-centroid penalty, lower = closer to constant acceleration), ``g_fit`` per clip
    (:func:`fit_gravity` on the thresholded foreground track, ``rel_tol`` for noisy tracks)
    and, when ``true_g`` is given, ``g_rel_error`` per clip. autoencoder: a latent model's
    (hooks then run on each step's decoded x0, ``latent.sample_clips``; mode "x0" only).
    """
    from viddiff_mini.latent import sample_clips

    if autoencoder is not None and mode != "x0":
        raise ValueError(f"mode={mode!r}: guidance through x_t needs pixel states; a latent "
                         f"model (autoencoder=...) is guided with mode='x0'")
    out = {}
    vids = []
    guided = physics_guidance_hook(scale, g, color, mode=mode, inner=x0_hook)
    for name, hook in (("unguided", x0_hook), ("guided", guided)):
        gen = torch.Generator().manual_seed(seed)
        v = sample_clips(model, diffusion, shape, autoencoder, hook, cond=cond, steps=steps,
                         generator=gen, grad=(name == "guided" and mode == "xt")).detach()
        vids.append(v)
        track = extract_track(v, color)
        gs = [fit_gravity(tr, rel_tol=rel_tol) for tr in track]
        rec = {"g_fit": gs, "penalty": float(physics_penalty(v, g, color))}
        if true_g:
            rec["g_rel_error"] = [abs(x - true_g) / true_g if x == x else float("nan") for x in gs]
        out[name] = rec
    out["videos"] = tuple(vids)
    return out


# --------------------------------------------------------------------------- planning
def ballistic_path(start, velocity, g: float, frames: int, floor: float | None = None,
                   restitution: float = 0.7) -> torch.Tensor:
    """``(frames, 2)`` px: the (x, y) path of a point thrown from ``start`` with
    ``velocity`` (px/frame) under gravity ``g`` (px/frame^2, +y is down, as in images).

    Positions are exact at each frame (``y = y0 + vy f + g f^2 / 2`` between impacts, so
    :func:`fit_gravity` recovers ``g``). With ``floor`` (y in px) the point bounces: at the
    impact time, found analytically between frames, its vertical speed becomes
    ``-restitution`` times the speed it arrived with; once a bounce would rise less than
    0.05 px it rests on the floor.
    """
    if frames < 1 or g < 0 or not 0 <= restitution < 1:
        raise ValueError(f"ballistic_path: expected frames >= 1, g >= 0 and 0 <= restitution "
                         f"< 1, got frames={frames}, g={g}, restitution={restitution}")
    (x0, y0), (vx, vy) = (float(v) for v in start), (float(v) for v in velocity)
    if floor is not None and y0 > floor:
        raise ValueError(f"start: y={y0} is below the floor y={floor} (image y grows downward)")
    y, t0, resting, out = y0, 0.0, False, []
    for f in range(frames):
        while floor is not None and not resting:
            # first s > 0 with y + vy s + g s^2 / 2 = floor (the later root of the quadratic)
            a, b, c = 0.5 * g, vy, y - floor
            if a > 0:
                s = (-b + (b * b - 4 * a * c) ** 0.5) / (2 * a)
            else:
                s = -c / b if b > 0 else float("inf")
            if s <= 1e-9 and vy <= 0:          # leaving the floor upward: no impact at s = 0
                break
            if t0 + s > f:
                break
            y, t0, vy = floor, t0 + s, -restitution * (vy + g * s)
            if vy * vy / (2 * g if g > 0 else 1.0) < 0.05:
                resting = True
        dt = f - t0
        fy = floor if resting else y + vy * dt + 0.5 * g * dt * dt
        out.append((x0 + vx * f, fy))
    return torch.tensor(out, dtype=torch.float32)
