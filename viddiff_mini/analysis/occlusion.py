"""Occlusion order (11.1.1, motion continuity: "遮挡关系正确"), measured against ground truth.

Where two objects overlap, the one in front must cover the one behind. MovingShapes-101
paints objects back to front (object k+1 in front of object k) and returns *visible* masks
(an object's mask is cleared where a front object covers it), so the ground truth says for
every frame which pixels the back object would cover if nothing were in front of it: its
**amodal** mask. :func:`occlusion_order` then asks of any video drawn on the same geometry
(a real clip, a reconstruction, a corrupted copy): in the overlap, do the pixels look like the
front object or like the back one?

* :func:`amodal_masks` — the back object's full silhouette per frame, rebuilt from its
  largest visible mask translated along its trajectory (exact for objects that translate
  without turning or scaling, as in the ``Occlude*`` classes);
* :func:`occlusion_order` — per frame, the share of overlap pixels closer in colour to the
  front object than to the back object; a frame is "front wins" when that share is > 1/2;
* :func:`paint_in_front` — a controlled violation: the back object painted over the front.

Shapes: video (b, 3, t, h, w) in [-1, 1]; masks (b, k, t, h, w) bool; trajectories
(b, k, t, 2) pixel (x, y) centres.
"""

from __future__ import annotations

import torch


def amodal_masks(masks: torch.Tensor, trajectories: torch.Tensor, obj: int = 0) -> torch.Tensor:
    """(b, t, h, w) bool: object ``obj``'s full silhouette in every frame.

    The frame where the object shows most pixels is taken as its template, moved by the
    integer-rounded trajectory offset to every other frame. Assumes the object only
    translates (true for the moving object of the ``Occlude*`` classes)."""
    if masks.ndim != 5 or trajectories.ndim != 4:
        raise ValueError(f"masks (b, k, t, h, w) and trajectories (b, k, t, 2) expected, got "
                         f"{tuple(masks.shape)} and {tuple(trajectories.shape)}")
    b, _, t, h, w = masks.shape
    m = masks[:, obj].bool()
    out = torch.zeros(b, t, h, w, dtype=torch.bool)
    for i in range(b):
        ref = int(m[i].flatten(1).sum(1).argmax())
        ys, xs = torch.nonzero(m[i, ref], as_tuple=True)
        for f in range(t):
            d = trajectories[i, obj, f] - trajectories[i, obj, ref]
            if not torch.isfinite(d).all():
                continue
            y = ys + int(torch.round(d[1]))
            x = xs + int(torch.round(d[0]))
            ok = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            out[i, f, y[ok], x[ok]] = True
    return out


def _mean_colour(video: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """(3,) mean colour of video (3, h, w) over the bool pixels ``where`` (h, w); NaN if none."""
    if not where.any():
        return torch.full((3,), float("nan"))
    return video[:, where].mean(1)


def occlusion_order(video: torch.Tensor, masks: torch.Tensor, trajectories: torch.Tensor,
                    back: int = 0, front: int = 1, min_pixels: int = 4) -> dict:
    """Does the front object win where the two objects overlap?

    For each clip and frame: the overlap is the back object's amodal mask intersected with
    the front object's visible mask (ground truth). The reference colours are measured *in
    the video under test*: the front object's mean colour outside the overlap, the back
    object's mean colour over its visible pixels (from the frames where it is visible, so
    a fully hidden frame still has one). Each overlap pixel votes for the nearer colour.

    Returns ``front_share`` (b, t): share of overlap pixels nearer the front colour (NaN in
    frames with fewer than ``min_pixels`` overlap pixels), ``overlap_pixels`` (b, t),
    ``front_wins`` (float): the fraction of frames with an overlap in which
    ``front_share > 0.5``, and ``frames`` (int): how many such frames there were.
    """
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video: expected (b, 3, t, h, w), got {tuple(video.shape)}")
    video = video.float().cpu()
    amodal = amodal_masks(masks.cpu(), trajectories.cpu(), back)
    vis_front = masks[:, front].bool().cpu()
    vis_back = masks[:, back].bool().cpu()
    overlap = amodal & vis_front
    b, t = overlap.shape[:2]
    share = torch.full((b, t), float("nan"))
    for i in range(b):
        back_colour = (video[i].permute(1, 2, 3, 0)[vis_back[i]].mean(0) if vis_back[i].any()
                       else torch.full((3,), float("nan")))                  # (3,)
        for f in range(t):
            o = overlap[i, f]
            if int(o.sum()) < min_pixels:
                continue
            front_colour = _mean_colour(video[i, :, f], vis_front[i, f] & ~o)
            px = video[i, :, f][:, o]                                        # (3, n)
            d_front = (px - front_colour[:, None]).norm(dim=0)
            d_back = (px - back_colour[:, None]).norm(dim=0)
            share[i, f] = float((d_front < d_back).float().mean())
    valid = ~share.isnan()
    wins = (share[valid] > 0.5).float()
    return {"front_share": share, "overlap_pixels": overlap.flatten(2).sum(2),
            "front_wins": float(wins.mean()) if len(wins) else float("nan"),
            "frames": int(valid.sum())}


def paint_in_front(video: torch.Tensor, masks: torch.Tensor, trajectories: torch.Tensor,
                   back: int = 0, front: int = 1, alpha: float = 1.0) -> torch.Tensor:
    """A copy of ``video`` with the back object drawn *over* the front one where they overlap
    (``alpha`` = 1: wrong depth order; 0.5: a half-transparent ghost, as a generator that
    blends the two might draw). The back object's colour is its mean visible colour."""
    out = video.clone().float()
    amodal = amodal_masks(masks.cpu(), trajectories.cpu(), back)
    overlap = (amodal & masks[:, front].bool().cpu()).to(video.device)
    vis_back = masks[:, back].bool()
    for i in range(video.shape[0]):
        if not vis_back[i].any():
            continue
        colour = video[i].float().permute(1, 2, 3, 0)[vis_back[i]].mean(0)  # (3,)
        o = overlap[i]                                                     # (t, h, w)
        frames = out[i].permute(1, 2, 3, 0)                                # (t, h, w, 3) view
        frames[o] = (1 - alpha) * frames[o] + alpha * colour
    return out
