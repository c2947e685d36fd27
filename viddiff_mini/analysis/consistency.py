"""Section 11.1.1 — temporal consistency: measure it, and losses that encourage it.

The book names three requirements: object persistence (identity, appearance and shape stay
consistent), motion continuity (smooth trajectories, plausible velocity and acceleration)
and lighting consistency (illumination changes gradually). Each gets a measurement here,
plus two clip-level symptoms of failure: warp error (frame i vs frame i+1 warped back by
the flow) and a flicker index (fast, non-gradual brightness oscillation).

Temporal regularisation losses, usable in training (``viddiff train --temporal-loss NAME
--temporal-weight W``): ``get_temporal_loss(name)(pred_x0, target_x0, flow=None)`` returns
a scalar. All of them compare the *temporal change* of the prediction with that of the
target, so real motion is not punished (over-smoothing is the failure the book warns of);
with ``target_x0=None`` they become a pure smoothness prior on the prediction.

Shapes: video (b, c, t, h, w) in [-1, 1]; masks (b, k, t, h, w) bool; flow
(b, 2, t-1, h, w) forward flow in pixels; trajectories (b, k, t, 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from viddiff_mini.analysis.motion import (
    constant_velocity_residual,
    estimate_flow,
    pixel_grid,
    trajectories_from_masks,
    trajectory_acceleration,
    warp,
)
from viddiff_mini.utils import check_video

__all__ = [
    "mask_iou", "object_persistence", "appearance_drift", "motion_continuity",
    "luminance", "frame_brightness", "lighting_consistency", "luminance_histograms",
    "warp_residual", "warp_error", "flicker_index", "consistency_report",
    "frame_diff_loss", "flow_warp_loss", "feature_loss", "none_loss",
    "TEMPORAL_LOSSES", "get_temporal_loss", "temporal_regularise",
    "add_brightness_flicker", "independent_frame_noise",
]


# --------------------------------------------------------------------------- object persistence
def _check_masks(masks, video: torch.Tensor | None = None) -> None:
    if not isinstance(masks, torch.Tensor) or masks.ndim != 5:
        shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"masks: expected (b, k, t, h, w) bool, got {shape}")
    if video is not None and (masks.shape[0] != video.shape[0]
                              or masks.shape[2:] != video.shape[2:]):
        raise ValueError(f"masks: expected (b, k, t, h, w) matching video (b, c, t, h, w) = "
                         f"{tuple(video.shape)}, got {tuple(masks.shape)}")


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks over the last two axes: (..., h, w) x (..., h, w) -> (...).

    Two empty masks give NaN (nothing to compare), one empty gives 0.
    """
    a, b = a.bool(), b.bool()
    inter = (a & b).sum((-2, -1)).float()
    union = (a | b).sum((-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, float("nan")))


def object_persistence(masks: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
    """Per-object persistence: mean IoU of each mask with its motion-compensated self in
    the next frame.

    masks: (b, k, t, h, w) bool. The object's displacement from frame i to i+1 is the mean
    ``flow`` (b, 2, t-1, h, w) over its frame-i mask when flow is given, else the motion
    of its centroid; the mask of frame i+1 is moved back by that displacement and compared
    with the mask of frame i. Returns (b, k) in [0, 1]: 1 = the object keeps its shape
    (identity and outline persist); lower = it deforms, vanishes, pops or splits. NaN for
    an object present in no consecutive pair of frames.

    (A *dense* backward warp of the next mask would be wrong here: at the object's leading
    edge the flow of frame i is the background's, so the mask would be smeared.)
    Rigid translation is compensated; rotation and scaling lower the score a little.
    """
    _check_masks(masks)
    b, k, t, h, w = masks.shape
    if t < 2:
        return torch.full((b, k), float("nan"))
    if flow is not None and tuple(flow.shape) != (b, 2, t - 1, h, w):
        raise ValueError(f"flow: expected (b, 2, t-1, h, w) = {(b, 2, t - 1, h, w)} for masks "
                         f"{tuple(masks.shape)}, got {tuple(flow.shape)}")
    cur = masks[:, :, :-1].float()  # (b, k, t-1, h, w)
    if flow is not None:
        fl = flow.float()[:, None]  # (b, 1, 2, t-1, h, w)
        area = cur.sum((-2, -1))  # (b, k, t-1)
        shift = (fl * cur[:, :, None]).sum((-2, -1)) / area.clamp_min(1)[:, :, None]
        shift = rearrange(shift, "b k two t -> b k t two")
        shift = torch.where((area > 0)[..., None], shift, torch.zeros_like(shift))
    else:
        tr = trajectories_from_masks(masks.bool())  # (b, k, t, 2)
        shift = torch.nan_to_num(tr[:, :, 1:] - tr[:, :, :-1])
    # out(p) = next(p + shift): moves the next mask back onto frame i
    fl = rearrange(shift, "b k t two -> (b k t) two")[:, :, None, None].expand(-1, 2, h, w)
    nx = rearrange(masks[:, :, 1:].float(), "b k t h w -> (b k t) 1 h w")
    back = warp(nx, fl.contiguous(), padding_mode="zeros")
    nxt = rearrange(back[:, 0], "(b k t) h w -> b k t h w", b=b, k=k) > 0.5
    iou = mask_iou(cur > 0.5, nxt)  # (b, k, t-1)
    return torch.nanmean(iou, dim=-1)


def appearance_drift(video: torch.Tensor, masks: torch.Tensor, erode: int = 1) -> torch.Tensor:
    """How much each object's mean colour wanders: (b, c, t, h, w), (b, k, t, h, w) -> (b, k).

    The largest distance (in [-1, 1] RGB units) between the object's mean colour in any
    frame and in its first visible frame. 0 = stable appearance (colour, texture mean).
    Masks are eroded by ``erode`` pixels first (antialiased edge pixels mix object and
    background, and how many there are changes with the sub-pixel position); a mask that
    erosion would empty is used as it is.
    """
    check_video(video, "video")
    _check_masks(masks, video)
    m = masks.float()
    if erode > 0:
        flat = rearrange(m, "b k t h w -> (b k t) 1 h w")
        er = -F.max_pool2d(-flat, 2 * erode + 1, stride=1, padding=erode)
        er = rearrange(er[:, 0], "(b k t) h w -> b k t h w", b=m.shape[0], k=m.shape[1])
        m = torch.where(er.sum((-2, -1), keepdim=True) > 0, er, m)
    m = m[:, None]  # (b, 1, k, t, h, w)
    v = video.float()[:, :, None]  # (b, c, 1, t, h, w)
    area = m.sum((-2, -1))  # (b, 1, k, t)
    mean = (v * m).sum((-2, -1)) / area.clamp_min(1)  # (b, c, k, t)
    present = area[:, 0] > 0  # (b, k, t)
    # colour in the first frame where the object is visible, per (clip, object)
    first = present.float().argmax(-1)  # (b, k); 0 when never present (masked below)
    ref = torch.gather(mean, 3, first[:, None, :, None].expand(-1, mean.shape[1], -1, 1))
    dist = (mean - ref).norm(dim=1)  # (b, k, t)
    dist = torch.where(present, dist, torch.full_like(dist, float("nan")))
    return _nanmax(dist)


# --------------------------------------------------------------------------- motion continuity
def motion_continuity(trajectories: torch.Tensor) -> dict[str, torch.Tensor]:
    """Smoothness of object trajectories (b, k, t, 2) in pixels.

    Returns ``mean_acc`` (b, k): mean |second difference| (px/frame^2; 0 for constant
    velocity), ``max_acc`` (b, k): the largest jump — a teleporting object shows here, and
    ``max_speed`` (b, k) in px/frame. NaN points (absent objects) are ignored.
    """
    if trajectories.ndim < 2 or trajectories.shape[-1] != 2:
        raise ValueError(f"trajectories: expected (b, k, t, 2) pixel centres (x, y), got "
                         f"{tuple(trajectories.shape)}")
    acc = trajectory_acceleration(trajectories).norm(dim=-1)
    vel = (trajectories[..., 1:, :] - trajectories[..., :-1, :]).norm(dim=-1)
    return {"mean_acc": constant_velocity_residual(trajectories), "max_acc": _nanmax(acc),
            "max_speed": _nanmax(vel)}


def _nanmax(x: torch.Tensor) -> torch.Tensor:
    """Max over the last axis ignoring NaN; NaN where every entry is NaN (or there is none)."""
    if x.shape[-1] == 0:
        return torch.full(x.shape[:-1], float("nan"), device=x.device)
    m = torch.nan_to_num(x, nan=float("-inf")).amax(-1)
    return torch.where(torch.isinf(m), torch.full_like(m, float("nan")), m)


# --------------------------------------------------------------------------- lighting
def luminance(video: torch.Tensor) -> torch.Tensor:
    """(b, 3, t, h, w) -> (b, 1, t, h, w) Rec.601 luma (any channel count: the mean)."""
    if video.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=video.dtype, device=video.device)
        return torch.einsum("bcthw,c->bthw", video, w)[:, None]
    return video.mean(1, keepdim=True)


def frame_brightness(video: torch.Tensor) -> torch.Tensor:
    """Per-frame mean luminance: (b, c, t, h, w) -> (b, t) in [-1, 1]."""
    check_video(video, "video")
    return luminance(video.float()).mean((1, 3, 4))


def luminance_histograms(video: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Per-frame luminance histograms, normalised to sum 1: (b, c, t, h, w) -> (b, t, bins)."""
    check_video(video, "video")
    y = luminance(video.float())[:, 0].clamp(-1, 1)  # (b, t, h, w)
    idx = ((y + 1) / 2 * bins).long().clamp(0, bins - 1)
    hist = F.one_hot(idx, bins).float().sum((2, 3))
    return hist / hist.sum(-1, keepdim=True)


def lighting_consistency(video: torch.Tensor, bins: int = 32) -> dict[str, torch.Tensor]:
    """Lighting over time, each (b,):

    * ``drift``: |mean brightness of the last frame - first frame| (slow change);
    * ``jitter``: mean |second difference| of per-frame brightness (non-gradual change —
      the book asks that ambient light changes *gradually*);
    * ``hist_step``: mean total-variation distance between consecutive luminance
      histograms (0 = identical, 1 = disjoint);
    * ``hist_drift``: total-variation distance between the first and last histograms.
    """
    br = frame_brightness(video)
    hist = luminance_histograms(video, bins)
    jitter = (br[:, 2:] - 2 * br[:, 1:-1] + br[:, :-2]).abs().mean(1) if br.shape[1] > 2 \
        else torch.zeros(br.shape[0])
    return {
        "drift": (br[:, -1] - br[:, 0]).abs(),
        "jitter": jitter,
        "hist_step": 0.5 * (hist[:, 1:] - hist[:, :-1]).abs().sum(-1).mean(1),
        "hist_drift": 0.5 * (hist[:, -1] - hist[:, 0]).abs().sum(-1),
    }


# --------------------------------------------------------------------------- warp error, flicker
def _valid_mask(flow: torch.Tensor) -> torch.Tensor:
    """(n, 2, h, w) -> (n, 1, h, w) True where p + flow(p) lands inside the image."""
    n, _, h, w = flow.shape
    c = pixel_grid(h, w, flow.device, flow.dtype)[None] + flow
    ok = (c[:, 0] >= 0) & (c[:, 0] <= w - 1) & (c[:, 1] >= 0) & (c[:, 1] <= h - 1)
    return ok[:, None]


def warp_residual(video: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """r_i = frame_i - warp(frame_{i+1}, flow_i) and its validity mask.

    video: (b, c, t, h, w); flow: (b, 2, t-1, h, w). Returns (residual (b, c, t-1, h, w),
    valid (b, 1, t-1, h, w) bool: the warped position is inside the frame).
    """
    check_video(video, "video", min_frames=2)
    b, c, t, h, w = video.shape
    if flow.shape != (b, 2, t - 1, h, w):
        raise ValueError(f"flow: expected (b, 2, t-1, h, w) = {(b, 2, t - 1, h, w)} for video "
                         f"{tuple(video.shape)}, got {tuple(flow.shape)}")
    cur = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w")
    nxt = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
    fl = rearrange(flow.to(video.dtype), "b two t h w -> (b t) two h w")
    res = cur - warp(nxt, fl)
    valid = _valid_mask(fl)
    return (rearrange(res, "(b t) c h w -> b c t h w", b=b),
            rearrange(valid, "(b t) c h w -> b c t h w", b=b))


def warp_error(video: torch.Tensor, flow: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute warp error per clip: (b, c, t, h, w) -> (b,), in [-1, 1] pixel units.

    |frame_i - warp(frame_{i+1}, flow_i)| averaged over valid pixels. ``flow``: ground truth
    (MovingShapes) when you have it; ``None`` estimates it with Horn–Schunck (then the
    number also contains the estimator's errors — say which one you report).
    ``mask``: optional (b, 1, t-1, h, w) bool of pixels to use (e.g. non-occluded).
    """
    check_video(video, "video", min_frames=2)
    if flow is None:
        flow = estimate_flow(video)
    res, valid = warp_residual(video.float(), flow.float())
    if mask is not None:
        valid = valid & mask.bool()
    err = res.abs().mean(1, keepdim=True)
    return (err * valid).sum((1, 2, 3, 4)) / valid.sum((1, 2, 3, 4)).clamp_min(1)


def flicker_index(video: torch.Tensor, patch: int = 8) -> torch.Tensor:
    """Flicker: mean |second temporal difference| of patch-mean luminance, (b, c, t, h, w) -> (b,).

    Luminance is averaged over ``patch`` x ``patch`` blocks first, so a small object moving
    smoothly barely registers, while brightness that jumps up and down from frame to frame
    (global or regional) does. Gradual changes (a slow fade) have ~zero second difference:
    that is drift, measured by :func:`lighting_consistency`, not flicker.
    """
    check_video(video, "video")
    if video.shape[2] < 3:
        return torch.zeros(video.shape[0])
    y = luminance(video.float())  # (b, 1, t, h, w)
    p = min(patch, y.shape[-1], y.shape[-2])
    y = rearrange(F.avg_pool2d(rearrange(y, "b c t h w -> (b t) c h w"), p),
                  "(b t) c h w -> b c t h w", b=video.shape[0])
    acc = y[:, :, 2:] - 2 * y[:, :, 1:-1] + y[:, :, :-2]
    return acc.abs().mean((1, 2, 3, 4))


def consistency_report(video: torch.Tensor, flow: torch.Tensor | None = None,
                       masks: torch.Tensor | None = None,
                       trajectories: torch.Tensor | None = None) -> dict[str, float]:
    """All the clip-level numbers above, averaged over the batch, as a flat dict of floats.

    ``masks``/``trajectories``/``flow`` are used when given (ground truth or tracked);
    flow is estimated otherwise.
    """
    out = {"flicker": float(flicker_index(video).mean()),
           "warp_error": float(warp_error(video, flow).mean())}
    out.update({f"light_{k}": float(v.mean()) for k, v in lighting_consistency(video).items()})
    if masks is not None:
        out["persistence"] = float(torch.nanmean(object_persistence(masks, flow)))
        out["appearance_drift"] = float(torch.nanmean(appearance_drift(video, masks)))
    if trajectories is not None:
        mc = motion_continuity(trajectories)
        out["mean_acc"] = float(torch.nanmean(mc["mean_acc"]))
    return out


# --------------------------------------------------------------------------- temporal losses
def _check_pair(pred: torch.Tensor, target: torch.Tensor | None) -> None:
    check_video(pred, "pred_x0")
    if target is not None:
        check_video(target, "target_x0")
        if target.shape != pred.shape:
            raise ValueError(f"target_x0: expected the shape of pred_x0 {tuple(pred.shape)}, "
                             f"got {tuple(target.shape)}")


def none_loss(pred_x0: torch.Tensor, target_x0: torch.Tensor | None = None,
              flow: torch.Tensor | None = None) -> torch.Tensor:
    """No temporal regulariser: a zero that keeps the graph, device and dtype."""
    return pred_x0.sum() * 0.0


def frame_diff_loss(pred_x0: torch.Tensor, target_x0: torch.Tensor | None = None,
                    flow: torch.Tensor | None = None) -> torch.Tensor:
    """Frame-difference loss: mean ((x_{i+1} - x_i)_pred - (x_{i+1} - x_i)_target)^2.

    Punishes temporal change that the target does not have (flicker), and missing change
    (frozen motion). With ``target_x0=None``: mean (x_{i+1} - x_i)^2 of the prediction, a
    pure smoothness prior that also damps real motion (the over-smoothing failure).
    """
    _check_pair(pred_x0, target_x0)
    if pred_x0.shape[2] < 2:
        return none_loss(pred_x0)
    d = pred_x0[:, :, 1:] - pred_x0[:, :, :-1]
    if target_x0 is not None:
        d = d - (target_x0[:, :, 1:] - target_x0[:, :, :-1])
    return d.pow(2).mean()


def flow_warp_loss(pred_x0: torch.Tensor, target_x0: torch.Tensor | None = None,
                   flow: torch.Tensor | None = None) -> torch.Tensor:
    """Flow-warped loss: frame differences after motion compensation.

    r_i(x) = x_i - warp(x_{i+1}, flow_i); loss = mean over in-frame pixels of
    (r(pred) - r(target))^2, or of r(pred)^2 when ``target_x0`` is None. Because the next
    frame is warped along the motion first, moving objects are not smoothed away — only
    changes that motion does not explain (flicker, popping). ``flow`` (b, 2, t-1, h, w):
    ground truth when available; if None it is estimated from the target (or the
    prediction) without gradient — Horn–Schunck on every training step is slow on CPU,
    so pass the flow when you have it.
    """
    _check_pair(pred_x0, target_x0)
    if pred_x0.shape[2] < 2:
        return none_loss(pred_x0)
    if flow is None:
        with torch.no_grad():
            ref = target_x0 if target_x0 is not None else pred_x0
            flow = estimate_flow(ref.detach().float().clamp(-1, 1), iters=30)
    flow = flow.to(pred_x0.device, pred_x0.dtype)
    r, valid = warp_residual(pred_x0, flow)
    if target_x0 is not None:
        rt, _ = warp_residual(target_x0, flow)
        r = r - rt
    valid = valid.to(r.dtype)
    return (r.pow(2) * valid).sum() / (valid.sum() * r.shape[1]).clamp_min(1)


_FEATURES: dict[tuple, torch.nn.Module] = {}


def _feature_net(c: int, device, dtype) -> torch.nn.Module:
    """A fixed, seeded, random 2-layer conv feature extractor (no pretrained weights needed).

    Random conv features respond to edges and textures at several orientations; comparing
    their temporal change is a cheap stand-in for a perceptual (VGG-style) feature loss.
    """
    key = (c, str(device), dtype)
    if key not in _FEATURES:
        g = torch.Generator().manual_seed(1101)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(c, 16, 3, padding=1), torch.nn.GELU(),
            torch.nn.Conv2d(16, 32, 3, padding=1, stride=2), torch.nn.GELU())
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim > 1 else 0.0))
        net.requires_grad_(False)
        _FEATURES[key] = net.to(device=device, dtype=dtype).eval()
    return _FEATURES[key]


def feature_loss(pred_x0: torch.Tensor, target_x0: torch.Tensor | None = None,
                 flow: torch.Tensor | None = None) -> torch.Tensor:
    """Feature-level loss: the frame-difference loss in a fixed random conv feature space.

    Features phi (16 then 32 channels, stride 2) are computed per frame; loss =
    mean ((phi_{i+1} - phi_i)_pred - (phi_{i+1} - phi_i)_target)^2. Conv features respond
    to local structure (edges, textures), so this weighs an edge that appears or shimmers
    more than a smooth change of the same energy in pixels. ``flow`` is unused.
    """
    _check_pair(pred_x0, target_x0)
    if pred_x0.shape[2] < 2:
        return none_loss(pred_x0)
    b = pred_x0.shape[0]
    net = _feature_net(pred_x0.shape[1], pred_x0.device, pred_x0.dtype)

    def feats(x):
        f = net(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(f, "(b t) c h w -> b c t h w", b=b)

    fp = feats(pred_x0)
    d = fp[:, :, 1:] - fp[:, :, :-1]
    if target_x0 is not None:
        ft = feats(target_x0)
        d = d - (ft[:, :, 1:] - ft[:, :, :-1])
    return d.pow(2).mean()


TemporalLoss = Callable[..., torch.Tensor]
TEMPORAL_LOSSES: dict[str, TemporalLoss] = {
    "none": none_loss,
    "frame_diff": frame_diff_loss,
    "flow_warp": flow_warp_loss,
    "feature": feature_loss,
}


def get_temporal_loss(name: str) -> TemporalLoss:
    """``fn(pred_x0 (b,c,t,h,w), target_x0 (b,c,t,h,w), flow=None) -> scalar`` by name.

    Names: "none", "frame_diff", "flow_warp", "feature". Unknown names raise ValueError.
    """
    if name not in TEMPORAL_LOSSES:
        raise ValueError(f"temporal loss: unknown name {name!r}; choose one of "
                         f"{sorted(TEMPORAL_LOSSES)}")
    return TEMPORAL_LOSSES[name]


def temporal_regularise(observed: torch.Tensor, name: str = "flow_warp", weight: float = 1.0,
                        flow: torch.Tensor | None = None, steps: int = 100, lr: float = 0.05
                        ) -> torch.Tensor:
    """Clean a flickering clip: argmin_x ||x - observed||^2 + weight * L_temporal(x).

    The frame-level data term alone reproduces the flicker; the temporal term (used as a
    prior, target=None) removes it; too much weight also removes real motion. Adam on x,
    ``steps`` iterations. observed: (b, c, t, h, w); returns the same shape in [-1, 1].
    """
    check_video(observed, "observed")
    loss_fn = get_temporal_loss(name)
    x = observed.detach().clone().float().requires_grad_(True)
    obs = observed.detach().float()
    if name == "flow_warp" and flow is None and obs.shape[2] > 1:
        flow = estimate_flow(obs.clamp(-1, 1))  # once, from the observation (not every step)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = (x - obs).pow(2).mean() + weight * loss_fn(x, None, flow)
        loss.backward()
        opt.step()
    return x.detach().clamp(-1, 1)


# --------------------------------------------------------------------------- failure makers
def add_brightness_flicker(video: torch.Tensor, amount: float = 0.15,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Add an independent random brightness offset to every frame (a flicker failure).

    video: (b, c, t, h, w); offsets ~ U(-amount, amount), one per (clip, frame).
    """
    check_video(video, "video")
    b, _, t = video.shape[:3]
    off = (torch.rand(b, 1, t, 1, 1, generator=generator) * 2 - 1) * amount
    return (video + off.to(video)).clamp(-1, 1)


def independent_frame_noise(video: torch.Tensor, sigma: float = 0.3, blur: int = 3,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """Mimic per-frame independent denoising: each frame gets its own noise, then a blur.

    Like running an image model frame by frame, each frame is individually plausible but the
    residual errors are uncorrelated in time -> shimmering textures and edges.
    """
    check_video(video, "video")
    noisy = video + sigma * torch.randn(video.shape, generator=generator).to(video)
    flat = rearrange(noisy, "b c t h w -> (b t) c h w")
    flat = F.avg_pool2d(F.pad(flat, (blur // 2,) * 4, mode="replicate"), blur, stride=1)
    return rearrange(flat, "(b t) c h w -> b c t h w", b=video.shape[0]).clamp(-1, 1)
