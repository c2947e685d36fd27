"""Drag editing of an existing clip (section 11.3.3, Exercise 11.3 part 3).

A user clicks points on a clip and drags them to targets. The edit is

1. **a motion request**: :func:`drag_paths` turns (start, target) pairs into trajectories
   ``(m, t, 2)`` that move from start to target over the clip (linear or eased);
2. **local**: only a region may change -- a mask ``(t, h, w)`` or ``(h, w)`` given by the user
   or made by :func:`drag_region` (discs around the dragged paths);
3. **stable elsewhere**: pixels outside the region must stay those of the source clip.

Stability is enforced during sampling in two documented ways:

* ``"x0"`` -- masked blending through ``x0_hook``: at every step the predicted clean clip
  outside the mask is replaced with the source (:func:`blend_hook`); the sampler re-derives
  its noise from the blended x0, and the last step returns x0 itself, so the unedited region
  of the result equals the source **bit for bit**;
* ``"repaint"`` -- RePaint-style: at every step the known region of ``x_t`` is replaced with
  the source noised to the same time, ``alpha_t x_src + sigma_t eps`` (:func:`repaint_sample`).

:func:`warp_drag` is a model-free drag (moves the pixels of the region along the path with
a backward warp): the classical baseline, and what the exercise builds first.

Metrics: :func:`masked_psnr` of the unedited region vs the source, and the drag error
(:func:`drag_error`): where the dragged content ended up vs the target, in pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .trajectory import _as_points, _grid, check_trajectories

__all__ = ["drag_paths", "drag_region", "check_mask", "blend_hook", "repaint_sample",
           "warp_drag", "masked_psnr", "drag_error", "drag_edit"]


def drag_paths(starts, targets, frames: int, ease: bool = True) -> torch.Tensor:
    """Trajectories ``(m, t, 2)`` from each start ``(m, 2)`` to its target ``(m, 2)``.

    ease: smoothstep timing (start and stop gently) instead of constant speed. Frame 0 is
    the start (the source clip), the last frame the target.
    """
    a = _as_points(starts, "starts")
    b = _as_points(targets, "targets")
    if a.shape != b.shape:
        raise ValueError(f"starts {tuple(a.shape)} and targets {tuple(b.shape)}: one target per "
                         f"dragged point is needed")
    s = torch.linspace(0, 1, frames)
    if ease:
        s = s * s * (3 - 2 * s)
    return a[:, None] + s[None, :, None] * (b - a)[:, None]


def check_mask(mask, video: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """A region mask as bool ``(b, 1, t, h, w)`` for ``video (b, c, t, h, w)``.

    Accepts ``(h, w)``, ``(t, h, w)``, ``(b, t, h, w)`` or ``(b, 1, t, h, w)``; a wrong size is a
    ValueError naming the expected ``(t, h, w)``.
    """
    m = torch.as_tensor(mask)
    b, _, t, h, w = video.shape
    if m.shape[-2:] != (h, w) or (m.ndim >= 3 and m.shape[-3] != t) or m.ndim > 5 or \
            (m.ndim == 5 and m.shape[1] != 1):
        raise ValueError(f"{name}: expected (h, w) = ({h}, {w}), (t, h, w) = ({t}, {h}, {w}) or "
                         f"(b, [1,] t, h, w) for a video of shape {tuple(video.shape)}, got "
                         f"{tuple(m.shape)}")
    if m.ndim == 2:
        m = m[None, None, None].expand(b, 1, t, h, w)
    elif m.ndim == 3:
        m = m[None, None].expand(b, 1, t, h, w)
    elif m.ndim == 4:
        m = m[:, None]
    if m.shape[0] not in (1, b):
        raise ValueError(f"{name}: batch {m.shape[0]} does not match the video batch {b}")
    return m.bool().expand(b, 1, t, h, w).to(video.device)


def drag_region(paths, size: int | tuple[int, int], radius: float = 6.0,
                per_frame: bool = False) -> torch.Tensor:
    """Editable region: discs of ``radius`` around every point of the drag ``paths (m, t, 2)``.

    per_frame=False: one ``(h, w)`` mask, the union over frames (the whole swept area may
    change); True: ``(t, h, w)``, only where the dragged content is at each frame plus where
    it was at frame 0 (so the vacated area can be filled in).
    """
    p = torch.as_tensor(paths, dtype=torch.float32)
    if p.ndim == 2:
        p = p[None]
    h, w = (size, size) if isinstance(size, int) else size
    xx, yy = _grid(h, w)
    d2 = (xx - p[..., 0, None, None]) ** 2 + (yy - p[..., 1, None, None]) ** 2   # (m, t, h, w)
    disc = (d2 <= radius**2).any(0)                                               # (t, h, w)
    if per_frame:
        return disc | disc[:1]
    return disc.any(0)


def blend_hook(source: torch.Tensor, mask, inner=None):
    """``x0_hook`` keeping the source outside ``mask``: ``x0 <- m * x0 + (1 - m) * source``.

    source ``(b, 3, t, h, w)``; mask: editable region (any shape :func:`check_mask` takes).
    Pixels outside the mask are *copied* (``torch.where``), not interpolated, so they match
    the source exactly. inner: a hook applied first (e.g. trajectory or physics guidance).
    """
    m = check_mask(mask, source)

    def hook(x0: torch.Tensor, t: float, x_t: torch.Tensor | None = None) -> torch.Tensor:
        if inner is not None:
            x0 = inner(x0, t, x_t)
        return torch.where(m.to(x0.device), x0, source.to(x0.device, x0.dtype))

    return hook


def repaint_sample(model, diffusion, source: torch.Tensor, mask, cond: dict | None = None,
                   steps: int = 50, generator: torch.Generator | None = None,
                   guidance=None, x0_hook=None) -> torch.Tensor:
    """RePaint-style inpainting (DDIM, eta = 0): outside ``mask`` the state ``x_t`` is the
    source noised to time t with fresh noise; inside it is the model's. Returns ``(b, 3, t, h, w)``.

    The final state at t = 0 is the source outside the mask (exactly).
    """
    from viddiff_mini.diffusion.samplers import ddim_step, make_grid

    m = check_mask(mask, source)
    grid = make_grid(diffusion.schedule, steps, diffusion.t_max)
    dev = source.device

    def noise():
        return torch.randn(source.shape, generator=generator,
                           device=generator.device if generator is not None else dev).to(dev)

    x = grid[0].sigma * noise()
    with torch.no_grad():
        for i in range(steps):
            p_t, p_s = grid[i], grid[i + 1]
            # the known region: the source noised to this step's time, fresh noise each step
            known = p_t.alpha * source + p_t.sigma * noise()
            x = torch.where(m, x, known)
            x0, _ = diffusion.predict_x0_eps(model, x, p_t.t, cond, guidance)
            x0 = x0.clamp(-1, 1)
            if x0_hook is not None:
                x0 = x0_hook(x0, p_t.t, x)
            eps = (x - p_t.alpha * x0) / p_t.sigma
            x = x0 if p_s.t <= 0 else ddim_step(x0, eps, p_t, p_s, 0.0, None)
    return torch.where(m, x.clamp(-1, 1), source)


def warp_drag(source: torch.Tensor, starts, targets, radius: float = 6.0, mask=None,
              ease: bool = True, fill: str = "ring") -> torch.Tensor:
    """Model-free drag: move the content around each start point to its target over the clip.

    source ``(b, 3, t, h, w)``. At frame f the disc of ``radius`` around the dragged point's
    position ``p_f`` shows the source frame-0 content around the start (a backward warp by
    ``start - p_f``). The area it vacated (the start disc, where the moved disc no longer
    covers it) is filled by ``fill``: ``"ring"`` -- the mean colour of a 2-pixel ring around
    the start disc in that frame (a crude inpainting; this is what a diffusion model does
    much better), or ``"keep"`` -- the source (a ghost stays behind). ``mask`` (optional,
    any shape :func:`check_mask` takes) limits where pixels may change: outside it the
    result is the source exactly. Returns ``(b, 3, t, h, w)``.
    """
    if fill not in ("ring", "keep"):
        raise ValueError(f"fill: expected 'ring' or 'keep', got {fill!r}")
    b, c, t, h, w = source.shape
    paths = drag_paths(starts, targets, t, ease)                  # (m, t, 2)
    check_trajectories(paths, (h, w))                             # targets inside the frame
    xx, yy = _grid(h, w, source.device)
    out = source.clone()
    frame0 = source[:, :, 0]
    for p, start in zip(paths, _as_points(starts)):
        d_start = ((xx - start[0]) ** 2 + (yy - start[1]) ** 2).sqrt()
        ring = (d_start > radius) & (d_start <= radius + 2)
        for f in range(t):
            disc = ((xx - p[f, 0]) ** 2 + (yy - p[f, 1]) ** 2) <= radius**2
            if fill == "ring":
                hole = (d_start <= radius) & ~disc
                r = ring & ~disc
                if hole.any() and r.any():
                    colour = out[:, :, f][..., r].mean(-1)               # (b, c)
                    out[:, :, f] = torch.where(hole, colour[..., None, None], out[:, :, f])
            shift = start - p[f]                                   # sample from start region
            gx = (xx + shift[0]) / max(w - 1, 1) * 2 - 1
            gy = (yy + shift[1]) / max(h - 1, 1) * 2 - 1
            grid = torch.stack([gx, gy], -1)[None].expand(b, h, w, 2)
            moved = F.grid_sample(frame0, grid, mode="bilinear", padding_mode="border",
                                  align_corners=True)
            out[:, :, f] = torch.where(disc, moved, out[:, :, f])
    if mask is not None:
        out = torch.where(check_mask(mask, source), out, source)
    return out


def masked_psnr(video: torch.Tensor, source: torch.Tensor, edit_mask) -> float:
    """PSNR (dB) of the *unedited* region (outside ``edit_mask``) of ``video`` vs ``source``.

    Identical unedited regions give ``inf``.
    """
    from .animate import psnr

    if video.shape != source.shape:
        raise ValueError(f"video {tuple(video.shape)} and source {tuple(source.shape)} must have "
                         f"the same shape (b, 3, t, h, w)")
    keep = ~check_mask(edit_mask, source)
    return psnr(video, source, keep)


def drag_error(video: torch.Tensor, source: torch.Tensor, targets, frame: int = -1,
               radius: float = 6.0, starts=None) -> float:
    """Pixels between each target and where the dragged content is at ``frame``.

    The dragged content is the source frame-0 patch around each start; we find it in
    ``video[:, :, frame]`` by template matching (minimum squared difference) -- no masks
    needed, so it works on generated clips.
    """
    if starts is None:
        raise ValueError("starts: the dragged start points are needed to know what to look for")
    s = _as_points(starts, "starts")
    tg = _as_points(targets, "targets")
    r = int(radius)
    errs = []
    b, c, t, h, w = video.shape
    for (sx, sy), (tx, ty) in zip(s.tolist(), tg.tolist()):
        x0, y0 = int(round(sx)), int(round(sy))
        pad = F.pad(source[:, :, 0], (r, r, r, r), mode="replicate")
        patch = pad[:, :, y0:y0 + 2 * r + 1, x0:x0 + 2 * r + 1]     # (b, c, 2r+1, 2r+1)
        frame_img = F.pad(video[:, :, frame], (r, r, r, r), mode="replicate")
        cost = torch.stack([F.conv2d(frame_img[i:i + 1] ** 2, torch.ones_like(patch[i:i + 1]))
                            - 2 * F.conv2d(frame_img[i:i + 1], patch[i:i + 1])
                            for i in range(b)])[:, 0, 0]           # (b, h, w)
        idx = cost.flatten(1).argmin(1)
        py, px = (idx // w).float(), (idx % w).float()
        errs.append(((px - tx) ** 2 + (py - ty) ** 2).sqrt().mean())
    return float(torch.stack(errs).mean())


def drag_edit(model, diffusion, source: torch.Tensor, starts, targets, mask=None,
              cond: dict | None = None, radius: float = 6.0, mode: str = "x0", steps: int = 50,
              generator: torch.Generator | None = None, guidance=None, inner_hook=None,
              autoencoder=None) -> dict:
    """Drag-edit ``source (b, 3, t, h, w)`` with a diffusion model; the edit stays local.

    The region defaults to :func:`drag_region` around the drag paths. ``cond`` carries the
    model's controls (e.g. trajectory maps of the drag paths from ``compose.cond_for_spec``);
    ``inner_hook`` may add guidance inside the region (e.g. trajectory guidance). mode:
    ``"x0"`` (masked blending, :func:`blend_hook`) or ``"repaint"``. Returns a dict with
    ``video``, ``mask`` (b, 1, t, h, w), ``paths`` (m, t, 2) and ``masked_psnr``.

    autoencoder: a latent model's autoencoder. The blending then runs on each step's decoded
    x0 (:func:`~viddiff_mini.latent.pixel_hook`), the result is decoded, and the unedited
    pixels are pasted back from the source (as latent inpainting pipelines do: the
    autoencoder's round trip would otherwise blur them). ``masked_psnr_decoded`` reports the
    decoded clip's fidelity outside the region *before* that paste-back.
    """
    if mode not in ("x0", "repaint"):
        raise ValueError(f"mode: expected 'x0' or 'repaint', got {mode!r}")
    b, _, t, h, w = source.shape
    paths = drag_paths(starts, targets, t)
    check_trajectories(paths, (h, w))
    region = drag_region(paths, (h, w), radius) if mask is None else mask
    m = check_mask(region, source)
    if autoencoder is not None:
        if mode != "x0":
            raise ValueError("mode='repaint' mixes noisy pixel states; a latent model "
                             "(autoencoder=...) drags with mode='x0'")
        from viddiff_mini.latent import sample_clips
        decoded = sample_clips(model, diffusion, tuple(source.shape), autoencoder,
                               blend_hook(source, m, inner=inner_hook), cond=cond, steps=steps,
                               generator=generator, guidance=guidance, device=source.device)
        video = torch.where(m, decoded, source)
        return {"video": video, "mask": m, "paths": paths,
                "masked_psnr": masked_psnr(video, source, m),
                "masked_psnr_decoded": masked_psnr(decoded, source, m)}
    if mode == "x0":
        video = diffusion.sample(model, tuple(source.shape), cond=cond, steps=steps,
                                 generator=generator, guidance=guidance, device=source.device,
                                 x0_hook=blend_hook(source, m, inner=inner_hook))
    else:
        video = repaint_sample(model, diffusion, source, m, cond, steps, generator, guidance,
                               x0_hook=inner_hook)
    return {"video": video, "mask": m, "paths": paths, "masked_psnr": masked_psnr(video, source, m)}
