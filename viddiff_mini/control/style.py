"""Style and content disentanglement (section 11.3.4 风格与内容解耦).

On MovingShapes-101 the split is concrete: **content** = which shapes move how (masks and
trajectories), **style** = how it looks (background colours and texture, the object
palette) -- the data set's groups vary exactly the style.

* :func:`style_code` ``(b, STYLE_DIM)``: background mean and std colour, texture energy and
  object mean colour, measured from pixels (with masks, or a foreground estimate). It is
  the style condition (``cond["vector"]`` group in ``compose``).
* :func:`adain` ``(content_feat, style_feat)``: AdaIN -- normalise content features per
  channel, re-scale them with the style's per-channel mean and std (Huang & Belongie 2017).
* :func:`transfer_style`: style transfer of a clip by AdaIN on pixels, separately for
  background and objects, with three temporal variants: ``"frame"`` (statistics per frame:
  flickers), ``"clip"`` (one set of statistics for the clip) and ``"flow"`` (per-frame
  result refined with a flow-warped consistency term :func:`warp_consistency_loss`).
* Metrics: content preserved (:func:`content_error`, trajectories unchanged), style matched
  (:func:`style_distance`) and :func:`flicker`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from viddiff_mini.utils import check_video

__all__ = ["STYLE_DIM", "style_code", "adain", "transfer_style", "warp_consistency_loss",
           "flicker", "style_distance", "content_error"]

STYLE_DIM = 10  # bg mean rgb (3), bg std rgb (3), texture (1), object mean rgb (3)


def _fg(video: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """Foreground ``(b, t, h, w)`` bool from object masks ``(b, k, t, h, w)`` or an estimate."""
    if masks is not None:
        if masks.ndim != 5 or masks.shape[0] != video.shape[0] or masks.shape[2:] != video.shape[2:]:
            raise ValueError(f"masks: expected (b, k, t, h, w) with (b, t, h, w) = "
                             f"{(video.shape[0], *video.shape[2:])}, got {tuple(masks.shape)}")
        return masks.bool().any(1)
    from .trajectory import foreground_map
    return foreground_map(video) > 0.5


def _masked_stats(x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean/std of ``x (b, c, t, h, w)`` over pixels where ``m (b, t, h, w)``."""
    w = m[:, None].float()
    n = w.sum(dim=(2, 3, 4)).clamp_min(1.0)
    mean = (x * w).sum(dim=(2, 3, 4)) / n
    var = (((x - mean[..., None, None, None]) ** 2) * w).sum(dim=(2, 3, 4)) / n
    return mean, var.clamp_min(0).sqrt()


def style_code(video: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
    """Style vector ``(b, 10)`` of ``video (b, 3, t, h, w)``: what a group of MovingShapes varies.

    Background mean rgb and std rgb, background texture energy (mean |Laplacian|, high for
    stripes and checkers, ~0 for plain), object mean rgb. Values are roughly in [-1, 1].
    """
    check_video(video, "video", channels=3)
    fg = _fg(video, masks)
    bg_mean, bg_std = _masked_stats(video, ~fg)
    ob_mean, _ = _masked_stats(video, fg)
    frames = rearrange(video.mean(1, keepdim=True), "b c t h w -> (b t) c h w")
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], device=video.device)[None, None]
    tex = F.conv2d(frames, lap, padding=1).abs()
    tex = rearrange(tex, "(b t) c h w -> b c t h w", b=video.shape[0])[:, 0]
    bgm = (~fg).float()
    bgm[..., :1, :] = 0
    bgm[..., -1:, :] = 0
    bgm[..., :, :1] = 0
    bgm[..., :, -1:] = 0                 # the image border has no full Laplacian
    texture = (tex * bgm).sum(dim=(1, 2, 3)) / bgm.sum(dim=(1, 2, 3)).clamp_min(1)
    return torch.cat([bg_mean, bg_std, texture[:, None], ob_mean], dim=1)


def adain(content_feat: torch.Tensor, style_feat: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """AdaIN: ``std_s * (x - mean_c) / std_c + mean_s`` per sample and channel.

    content_feat ``(b, c, ...)``; style_feat ``(b, c, ...)`` (any trailing size) or style
    statistics as a tuple ``(mean (b, c), std (b, c))``. Statistics are over all trailing
    dims (for a video ``(b, c, t, h, w)``: over time and space, so one transform per clip,
    which keeps the result temporally consistent).
    """
    x = content_feat
    dims = tuple(range(2, x.ndim))
    mc, sc = x.mean(dims, keepdim=True), x.std(dims, keepdim=True, unbiased=False)
    if isinstance(style_feat, tuple):
        ms, ss = style_feat
        ms = ms.reshape(*ms.shape, *([1] * len(dims)))
        ss = ss.reshape(*ss.shape, *([1] * len(dims)))
    else:
        if style_feat.shape[:2] != x.shape[:2]:
            raise ValueError(f"style_feat: expected (b, c) = {tuple(x.shape[:2])} leading dims, "
                             f"got {tuple(style_feat.shape)}")
        sd = tuple(range(2, style_feat.ndim))
        ms = style_feat.mean(sd).reshape(*x.shape[:2], *([1] * len(dims)))
        ss = style_feat.std(sd, unbiased=False).reshape(*x.shape[:2], *([1] * len(dims)))
    return ss * (x - mc) / (sc + eps) + ms


def _adain_region(x, m, ref, mref, per_frame: bool):
    """AdaIN of ``x`` pixels in region ``m`` to ``ref`` pixels in ``mref`` (clip or per frame)."""
    out = x.clone()
    if per_frame:
        for f in range(x.shape[2]):
            out[:, :, f:f + 1] = _adain_region(x[:, :, f:f + 1], m[:, f:f + 1], ref[:, :, f:f + 1]
                                               if ref.shape[2] > f else ref[:, :, -1:],
                                               mref[:, f:f + 1] if mref.shape[1] > f else mref[:, -1:],
                                               False)
        return out
    mc, sc = _masked_stats(x, m)
    ms, ss = _masked_stats(ref, mref)
    y = (x - mc[..., None, None, None]) / (sc[..., None, None, None] + 1e-5) \
        * ss[..., None, None, None] + ms[..., None, None, None]
    return torch.where(m[:, None], y, out)


def warp_consistency_loss(video: torch.Tensor, flow: torch.Tensor,
                          valid: torch.Tensor | None = None) -> torch.Tensor:
    """Flow-warped temporal consistency: ``mean |warp(x_{i+1}, flow_i) - x_i|^2``.

    video ``(b, c, t, h, w)``; flow ``(b, 2, t-1, h, w)`` forward flow (pixels).
    valid: optional ``(b, t-1, h, w)`` bool (e.g. not occluded). Scalar.
    """
    from viddiff_mini.analysis.motion import warp

    b, c, t, h, w = video.shape
    if flow.shape != (b, 2, t - 1, h, w):
        raise ValueError(f"flow: expected (b, 2, t-1, h, w) = {(b, 2, t - 1, h, w)}, got "
                         f"{tuple(flow.shape)}")
    nxt = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
    fl = rearrange(flow, "b two t h w -> (b t) two h w")
    pred = rearrange(warp(nxt, fl), "(b t) c h w -> b c t h w", b=b)
    err = (pred - video[:, :, :-1]) ** 2
    if valid is not None:
        m = valid[:, None].float()
        return (err * m).sum() / (m.sum() * c).clamp_min(1)
    return err.mean()


def transfer_style(video: torch.Tensor, reference: torch.Tensor, masks=None, ref_masks=None,
                   mode: str = "clip", flow: torch.Tensor | None = None, weight: float = 5.0,
                   iters: int = 30, lr: float = 0.5) -> torch.Tensor:
    """Restyle ``video (b, 3, t, h, w)`` with the look of ``reference (b, 3, t', h, w)``.

    Background and objects are transferred separately (AdaIN on pixels within each region),
    so shapes and motion (the content) stay where they are. mode: ``"frame"`` (statistics per
    frame), ``"clip"`` (one set per clip; default) or ``"flow"`` (per-frame result refined by
    ``iters`` gradient steps on ``|y - y_frame|^2 + weight * |warp(y_{i+1}, flow) - y_i|^2``;
    ``flow`` defaults to an estimate from ``video``). Returns ``(b, 3, t, h, w)`` in [-1, 1].
    """
    check_video(video, "video", channels=3)
    check_video(reference, "reference", channels=3)
    if mode not in ("frame", "clip", "flow"):
        raise ValueError(f"mode: expected 'frame', 'clip' or 'flow', got {mode!r}")
    fg, rfg = _fg(video, masks), _fg(reference, ref_masks)
    per_frame = mode != "clip"
    y = _adain_region(video, ~fg, reference, ~rfg, per_frame)
    y = _adain_region(y, fg, reference, rfg, per_frame)
    y = y.clamp(-1, 1)
    if mode != "flow":
        return y
    if flow is None:
        from viddiff_mini.analysis.motion import estimate_flow
        flow = estimate_flow(video)
    # Gradient descent on E(z) = sum |z - y|^2 + weight * sum |warp(z_{i+1}) - z_i|^2 (per
    # pixel sums, so the step size does not depend on the clip size; lr below 1 / (1 + 4 w)
    # keeps the iteration stable). Plain steps, no optimizer object: nothing to configure.
    target = y.detach()
    z = target.clone()
    n = z[:, :, :-1].numel()
    step = lr / (1.0 + 4.0 * weight)
    for _ in range(iters):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            energy = ((z - target) ** 2).sum() + weight * n * warp_consistency_loss(z, flow)
            (grad,) = torch.autograd.grad(energy, z)
        z = z.detach() - step * grad
    return z.detach().clamp(-1, 1)


def flicker(video: torch.Tensor, masks: torch.Tensor | None = None) -> float:
    """Mean absolute change of per-frame background mean colour between frames.

    A background that should be still (no camera motion) but changes colour from frame to
    frame flickers; 0 = steady. video ``(b, 3, t, h, w)``.
    """
    fg = _fg(video, masks)
    w = (~fg)[:, None].float()
    mean = (video * w).sum(dim=(3, 4)) / w.sum(dim=(3, 4)).clamp_min(1)   # (b, 3, t)
    return float((mean[..., 1:] - mean[..., :-1]).abs().mean())


def style_distance(video: torch.Tensor, reference: torch.Tensor, masks=None, ref_masks=None) -> float:
    """L2 distance between style codes (colour statistics) of two clips, averaged over b."""
    return float((style_code(video, masks) - style_code(reference, ref_masks)).norm(dim=1).mean())


def content_error(video: torch.Tensor, source_masks: torch.Tensor) -> float:
    """Content preserved? Pixel distance between the source objects' mask centroids and the
    centroids of the restyled clip's foreground found *inside a slightly dilated source mask
    region* -- 0 when shapes and motion are unchanged. source_masks ``(b, k, t, h, w)``.
    """
    from .trajectory import mask_centroids, trajectory_error

    src = mask_centroids(source_masks.bool())                    # (b, k, t, 2)
    fg = _fg(video, None)                                        # estimate from the new pixels
    near = F.max_pool3d(source_masks.float().flatten(0, 1)[:, None], (1, 5, 5), 1, (0, 2, 2))
    near = near[:, 0].view_as(source_masks).bool()
    est = mask_centroids(near & fg[:, None])
    return trajectory_error(src, est)
