"""Reference solutions for lesson 11.1 (data and baselines). Same functions as
``lessons/exercises/ex11_1.py``, solved. Instructor only: never in the student handout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.checkpoint import checkpoint

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


# =========================================================================== Exercise 11.1.1b
def _check_pair(pred: torch.Tensor, target: torch.Tensor | None) -> None:
    check_video(pred, "pred")
    if target is not None:
        check_video(target, "target")
        if target.shape != pred.shape:
            raise ValueError(f"target: expected the shape of pred {tuple(pred.shape)}, got "
                             f"{tuple(target.shape)}")


def temporal_consistency_loss(pred: torch.Tensor, target: torch.Tensor | None = None,
                              flow: torch.Tensor | None = None) -> torch.Tensor:
    """Compare the frame-to-frame change of ``pred`` with that of ``target``.

    ``d_i(x) = x_{i+1} - x_i`` without flow, ``d_i(x) = warp(x_{i+1}, flow_i) - x_i`` with
    flow (motion compensated); loss = mean (d(pred) - d(target))^2, or mean d(pred)^2 when
    ``target`` is None. Returns a scalar that keeps the graph.
    """
    _check_pair(pred, target)
    b, c, t, h, w = pred.shape
    if flow is not None and tuple(flow.shape) != (b, 2, t - 1, h, w):
        raise ValueError(f"flow: expected (b, 2, t - 1, h, w) = {(b, 2, t - 1, h, w)}, got "
                         f"{tuple(flow.shape)}")
    if t < 2:  # no pair of frames: nothing to compare, but keep the graph
        return pred.sum() * 0.0

    def change(x: torch.Tensor) -> torch.Tensor:
        nxt = x[:, :, 1:]
        if flow is not None:
            # Bring frame i+1 back to frame i along the motion: a moving object then
            # produces no change, only unexplained change (flicker) remains.
            folded = rearrange(nxt, "b c t h w -> (b t) c h w")
            fl = rearrange(flow.to(x.dtype), "b two t h w -> (b t) two h w")
            nxt = rearrange(_sample_at(folded, fl), "(b t) c h w -> b c t h w", b=b)
        return nxt - x[:, :, :-1]

    d = change(pred)
    if target is not None:
        d = d - change(target)
    return d.pow(2).mean()


# =========================================================================== Exercise 11.1.1c
def detect_temporal_failures(video: torch.Tensor, flicker_threshold: float = 0.02,
                             drift_threshold: float = 0.2) -> dict[str, torch.Tensor]:
    """Per-clip flicker and drift scores from the per-frame mean brightness.

    b_i = mean of frame i over (c, h, w); flicker = mean_i |b_{i+1} - 2 b_i + b_{i-1}|
    (0 for a steady or linearly fading clip); drift = |b_{t-1} - b_0|. Returns
    ``{"flicker": (b,), "drift": (b,), "flickering": (b,) bool, "drifting": (b,) bool}``.
    """
    check_video(video, "video")
    bright = video.float().mean(dim=(1, 3, 4))  # (b, t)
    if bright.shape[1] >= 3:
        # Second difference: a jump up and back down is large, a steady ramp is zero.
        acc = bright[:, 2:] - 2 * bright[:, 1:-1] + bright[:, :-2]
        flicker = acc.abs().mean(dim=1)
    else:
        flicker = torch.zeros(bright.shape[0])
    drift = (bright[:, -1] - bright[:, 0]).abs()
    return {"flicker": flicker, "drift": drift,
            "flickering": flicker > flicker_threshold, "drifting": drift > drift_threshold}


# =========================================================================== Exercise 11.1.2a
def representation_bytes(shape, dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """Bytes of a (b, c, t, h, w) clip as RGB frames, as optical flow, and as key frame + flow.

    rgb: b c t h w elements; flow: b 2 (t - 1) h w (one (dx, dy) field per consecutive
    pair); keyframe_flow: the first frame (b c h w) plus the flow. Times the element size.
    """
    shape = tuple(shape)
    if len(shape) != 5 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(f"shape: expected 5 positive ints (b, c, t, h, w), got {shape}")
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype: expected a torch.dtype such as torch.float16, got {dtype!r}")
    b, c, t, h, w = shape
    size = torch.empty((), dtype=dtype).element_size()  # bytes per element
    rgb = b * c * t * h * w
    flow = b * 2 * (t - 1) * h * w
    return {"rgb": rgb * size, "flow": flow * size, "keyframe_flow": (b * c * h * w + flow) * size}


def reconstruct_from_flow(keyframe: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Rebuild a clip (b, c, t, h, w) from its key frame (b, c, h, w) and forward flow
    (b, 2, t - 1, h, w): frame_{i+1}(p) = frame_i(p - flow_i(p)), bilinear, border padding.
    """
    if not isinstance(keyframe, torch.Tensor) or keyframe.ndim != 4:
        raise ValueError(f"keyframe: expected (b, c, h, w), got "
                         f"{tuple(keyframe.shape) if isinstance(keyframe, torch.Tensor) else keyframe!r}")
    b, c, h, w = keyframe.shape
    if (not isinstance(flow, torch.Tensor) or flow.ndim != 5
            or (flow.shape[0], flow.shape[1], flow.shape[3], flow.shape[4]) != (b, 2, h, w)):
        raise ValueError(f"flow: expected (b, 2, t - 1, h, w) with (b, h, w) = {(b, h, w)}, got "
                         f"{tuple(flow.shape) if isinstance(flow, torch.Tensor) else flow!r}")
    frames = [keyframe]
    for i in range(flow.shape[2]):
        # content at p in frame i is at p + F in frame i + 1: read frame i at p - F
        frames.append(_sample_at(frames[-1], -flow[:, :, i].to(keyframe.dtype)))
    return torch.stack(frames, dim=2)


# =========================================================================== Exercise 11.1.2b
class CheckpointedSequential(torch.nn.Module):
    """Run ``blocks`` in order; during training keep only each segment's input for backward.

    ``segments`` consecutive groups of blocks are each wrapped in
    ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``: the activations inside
    a segment are recomputed during backward instead of being stored.
    """

    def __init__(self, blocks, segments: int | None = None):
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        n = len(self.blocks)
        if n == 0:
            raise ValueError("blocks: expected at least one module")
        segments = n if segments is None else segments
        if not isinstance(segments, int) or not 1 <= segments <= n:
            raise ValueError(f"segments: expected an int in [1, {n}], got {segments!r}")
        # Split the block indices into `segments` nearly equal consecutive runs.
        bounds = torch.linspace(0, n, segments + 1).round().long().tolist()
        self.groups = [list(range(bounds[i], bounds[i + 1])) for i in range(segments)]

    def _run(self, group: list[int], x: torch.Tensor) -> torch.Tensor:
        for i in group:
            x = self.blocks[i](x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for group in self.groups:
            if torch.is_grad_enabled():
                x = checkpoint(self._run, group, x, use_reentrant=False)
            else:  # inference: nothing is stored anyway, skip the bookkeeping
                x = self._run(group, x)
        return x


# =========================================================================== Exercise 11.1.2c
def amp_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   target: torch.Tensor, dtype: torch.dtype = torch.bfloat16,
                   scaler=None) -> float:
    """One mixed-precision training step; returns the loss as a float.

    Forward under ``torch.autocast(x.device.type, dtype)``; MSE loss computed in float32;
    backward (through ``scaler`` when one is given, for float16); optimizer step.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        out = model(x)
    # The loss is a reduction: do it in float32 (outside autocast), where it is accurate.
    loss = F.mse_loss(out.float(), target.float())
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.item()


# =========================================================================== Exercise 11.1.3a
def flow_to_color(flow: torch.Tensor, max_mag: float | None = None) -> torch.Tensor:
    """Colour-wheel image of a flow field (..., 2, h, w) -> (..., 3, h, w) RGB in [0, 1].

    hue = atan2(dy, dx) / 2 pi (mod 1), saturation = min(|flow| / max_mag, 1), value = 1.
    """
    if not isinstance(flow, torch.Tensor) or flow.ndim < 3 or flow.shape[-3] != 2:
        raise ValueError(f"flow: expected (..., 2, h, w) with (dx, dy), got "
                         f"{tuple(flow.shape) if isinstance(flow, torch.Tensor) else flow!r}")
    dx, dy = flow.float().unbind(-3)
    mag = torch.sqrt(dx**2 + dy**2)
    m = float(mag.max()) if max_mag is None else float(max_mag)
    hue = torch.remainder(torch.atan2(dy, dx) / (2 * torch.pi), 1.0)
    sat = (mag / max(m, 1e-12)).clamp(0, 1)
    # HSV -> RGB with V = 1: each channel is 1 - S * clamp(|6h - offset| - 1, 0, 1) form
    # (the standard hexcone), written with the "k" trick: k = (n + 6h) mod 6.
    channels = []
    for n in (5.0, 3.0, 1.0):  # R, G, B
        k = torch.remainder(n + hue * 6, 6.0)
        channels.append(1 - sat * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=-3)


# =========================================================================== Exercise 11.1.3b
def _affine_design(h: int, w: int, model: str, dtype) -> torch.Tensor:
    """(2 h w, p) design matrix: flow (u rows then v rows) = A @ params."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype),
                            indexing="ij")
    x, y = xs.reshape(-1), ys.reshape(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    if model == "translation":
        ru, rv = torch.stack([one, zero], 1), torch.stack([zero, one], 1)
    else:  # affine: u = a0 + a1 x + a2 y, v = a3 + a4 x + a5 y
        ru = torch.stack([one, x, y, zero, zero, zero], 1)
        rv = torch.stack([zero, zero, zero, one, x, y], 1)
    return torch.cat([ru, rv], 0)


def decompose_global_local(flow: torch.Tensor, model: str = "affine",
                           threshold: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split flow (n, 2, h, w) into a global (camera) field and the local residual.

    Least-squares fit of the global ``model`` ("translation" | "affine") to all pixels,
    then a second fit on the inliers only (residual norm < ``threshold`` px), so moving
    objects do not bias the camera motion. Returns (global, local), both (n, 2, h, w),
    with global + local == flow.
    """
    if model not in ("translation", "affine"):
        raise ValueError(f"model: expected 'translation' or 'affine', got {model!r}")
    if not isinstance(flow, torch.Tensor) or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"flow: expected (n, 2, h, w), got "
                         f"{tuple(flow.shape) if isinstance(flow, torch.Tensor) else flow!r}")
    n, _, h, w = flow.shape
    A = _affine_design(h, w, model, torch.float64)                     # (2hw, p)
    y = rearrange(flow.double(), "n two h w -> n (two h w)")          # (n, 2hw)
    glob = []
    for i in range(n):
        inlier = torch.ones(h * w, dtype=torch.bool)
        for _ in range(2):  # fit on all pixels, then refit on the inliers
            rows = torch.cat([inlier, inlier])  # a pixel's u and v rows go together
            params = torch.linalg.lstsq(A[rows], y[i, rows][:, None]).solution[:, 0]
            fitted = A @ params
            res = (y[i] - fitted).reshape(2, h * w).norm(dim=0)
            inlier = res < threshold
            if inlier.sum() < A.shape[1]:  # too few inliers to refit: keep the first fit
                break
        glob.append(fitted)
    glob = rearrange(torch.stack(glob), "n (two h w) -> n two h w", two=2, h=h).to(flow.dtype)
    return glob, flow - glob


# =========================================================================== Exercise 11.1.3c
def smooth_trajectory(traj: torch.Tensor, lam: float = 10.0) -> torch.Tensor:
    """Constant-velocity prior: argmin_p ||p - traj||^2 + lam ||D2 p||^2, per trajectory.

    traj (..., t, 2) -> same shape. D2 is the (t - 2, t) second-difference matrix, so the
    minimiser solves (I + lam D2^T D2) p = traj.
    """
    if not isinstance(traj, torch.Tensor) or traj.ndim < 2 or traj.shape[-1] != 2:
        raise ValueError(f"traj: expected (..., t, 2), got "
                         f"{tuple(traj.shape) if isinstance(traj, torch.Tensor) else traj!r}")
    if lam < 0:
        raise ValueError(f"lam: expected lam >= 0, got {lam!r}")
    t = traj.shape[-2]
    if t < 3:  # no acceleration to penalise
        return traj.clone()
    d2 = torch.zeros(t - 2, t, dtype=torch.float64)
    for i in range(t - 2):
        d2[i, i:i + 3] = torch.tensor([1.0, -2.0, 1.0])
    system = torch.eye(t, dtype=torch.float64) + lam * d2.T @ d2     # (t, t), symmetric PD
    return torch.linalg.solve(system, traj.double()).to(traj.dtype)


# =========================================================================== Exercise 11.1.4a
def quality_check(frames: torch.Tensor, min_frames: int = 8, min_brightness: float = 20.0,
                  min_motion: float = 0.5, max_jump: float = 60.0) -> tuple[bool, str]:
    """Filter one clip of uint8 frames (t, h, w, c): ``(keep, reason)``.

    Checks, in order: "too_short" (t < min_frames), "too_dark" (mean pixel <
    min_brightness), "static" (mean |frame_{i+1} - frame_i| < min_motion), "scene_cut" (the
    largest consecutive mean |difference| > max_jump). A clip passing all gives (True, "ok").
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.dtype != torch.uint8:
        raise ValueError(f"frames: expected uint8 (t, h, w, c), got "
                         f"{(frames.dtype, tuple(frames.shape)) if isinstance(frames, torch.Tensor) else frames!r}")
    t = frames.shape[0]
    if t < min_frames:
        return False, "too_short"
    x = frames.float()  # uint8 arithmetic would wrap around below 0
    if float(x.mean()) < min_brightness:
        return False, "too_dark"
    diffs = (x[1:] - x[:-1]).abs().mean(dim=(1, 2, 3))  # (t - 1,) per-pair change
    if float(diffs.mean()) < min_motion:
        return False, "static"
    if float(diffs.max()) > max_jump:
        return False, "scene_cut"
    return True, "ok"


# =========================================================================== Exercise 11.1.4b
def preprocess_clip(frames: torch.Tensor, size: int, num_frames: int,
                    stride: int = 1) -> torch.Tensor:
    """uint8 (T, H, W, C) -> float (C, num_frames, size, size) in [-1, 1].

    Take frames 0, stride, ..., (num_frames - 1) stride *first* (only those are converted
    and resized), resize so the shorter side is ``size`` (bilinear, antialias), centre-crop
    to size x size, map [0, 255] -> [-1, 1].
    """
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.dtype != torch.uint8:
        raise ValueError("frames: expected uint8 (t, h, w, c)")
    need = (num_frames - 1) * stride + 1
    if frames.shape[0] < need:
        raise ValueError(f"frames: {num_frames} frames with stride {stride} need at least "
                         f"{need} input frames, got {frames.shape[0]}")
    x = frames[: need : stride]                                  # subsample before any work
    x = rearrange(x, "t h w c -> t c h w").float()
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False,
                      antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[:, :, top:top + size, left:left + size]
    x = x / 127.5 - 1.0
    return rearrange(x, "t c h w -> c t h w").clamp(-1, 1).contiguous()


# =========================================================================== Exercise 11.1.4c
def make_benchmark(n_per_class: int, seed: int = 0, fold: int = 1,
                   classes=None) -> list[tuple[int, int]]:
    """A deterministic evaluation set: ``n_per_class`` test clips of each class.

    Returns (clip index, label) pairs sorted by (label, index). For each class, its test
    indices (fold ``fold``) are shuffled with ``torch.Generator().manual_seed(seed * 1000 +
    label)`` and the first ``n_per_class`` kept.
    """
    from viddiff_mini.data import synthetic

    if not isinstance(n_per_class, int) or n_per_class < 1:
        raise ValueError(f"n_per_class: expected a positive int, got {n_per_class!r}")
    table = synthetic.clip_index_table()                     # index -> (label, group, clip)
    by_class: dict[int, list[int]] = {}
    for i in synthetic.split_indices("test", fold):         # test groups only
        by_class.setdefault(table[i][0], []).append(i)
    wanted = sorted(by_class) if classes is None else sorted(set(classes))
    out = []
    for label in wanted:
        pool = by_class.get(label, [])
        if len(pool) < n_per_class:
            raise ValueError(f"n_per_class: class {label} has only {len(pool)} test clips, "
                             f"asked for {n_per_class}")
        # A generator per class: adding or removing classes never changes another class.
        g = torch.Generator().manual_seed(seed * 1000 + label)
        pick = torch.randperm(len(pool), generator=g)[:n_per_class].tolist()
        out += [(pool[j], label) for j in pick]
    return sorted(out, key=lambda pair: (pair[1], pair[0]))
