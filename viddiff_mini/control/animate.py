"""Image animation: a clip from a given first frame (section 11.3.2 图像动画化).

Two ways to make a model honour a given first frame, usable alone or together:

* **conditioning by concatenation** -- :func:`first_frame_maps` builds ``(b, 4, t, h, w)``
  maps for ``cond["concat"]``: the image on every frame (as Stable Video Diffusion
  concatenates its image latent to every frame; ``repeat=False``: frame 0 only, zeros
  elsewhere) plus an indicator channel (1 on frame 0) that says which frame is pinned and
  makes "no first frame" (all zeros) distinguishable from a grey image. A model trained
  with these maps *learns* to continue the image.
* **frame replacement during sampling** -- :func:`first_frame_hook` is an ``x0_hook`` for
  ``Diffusion.sample``: at every step frame 0 of the predicted clean clip is replaced by the
  image, and the sampler re-derives its noise from the edited x0, so the other frames are
  denoised *around* the given frame. The final sample's frame 0 equals the image exactly.

Motion-type decomposition: camera motion and object motion are separate conditions
(:func:`encode_motion`), each optional, and :func:`measure_motion` splits a clip's motion
back into camera (the global part of the flow) and object (the mask centroid's motion
relative to the camera), so each request can be checked on its own. A camera request
also moves the conditioning image itself (``first_frame_maps(camera=...)``: frame ``k``
shows it shifted by ``k`` times the pan), so the network only has to keep the object
still in the world and fill the uncovered edge.

Metric: :func:`first_frame_fidelity` -- PSNR and a small SSIM of frame 0 vs the image.
The research question of the book's box (one image, many plausible motions) is measured by
:func:`motion_diversity` over several seeds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["FIRST_FRAME_CHANNELS", "MOTION_DIM", "first_frame_maps", "translate", "first_frame_hook",
           "encode_motion", "measure_motion", "psnr", "ssim_lite", "first_frame_fidelity",
           "motion_diversity", "animate", "check_image", "motion_from_truth"]

FIRST_FRAME_CHANNELS = 4   # rgb (the image) + indicator channel (1 on frame 0)
MOTION_DIM = 6             # camera (dx, dy, present), object (dx, dy, present)


def check_image(image, name: str = "image", size: tuple[int, int] | None = None) -> torch.Tensor:
    """An image batch ``(b, 3, h, w)`` (a single ``(3, h, w)`` gets a batch axis), in [-1, 1]."""
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (b, 3, h, w), got {type(image).__name__}")
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[1] != 3 or not image.is_floating_point():
        raise ValueError(f"{name}: expected a float image (b, 3, h, w) or (3, h, w) in [-1, 1], "
                         f"got shape {tuple(image.shape)} dtype {image.dtype}")
    if size is not None and tuple(image.shape[-2:]) != tuple(size):
        raise ValueError(f"{name}: expected spatial size {tuple(size)}, got {tuple(image.shape[-2:])}")
    return image


def first_frame_maps(image: torch.Tensor, frames: int, repeat: bool = True,
                     camera: torch.Tensor | None = None) -> torch.Tensor:
    """Concat maps ``(b, 4, t, h, w)``: rgb of ``image (b, 3, h, w)`` + indicator (frame 0).

    repeat: the image on every frame (default) or on frame 0 only (zeros after). Why repeat:
    with frame 0 only, every later frame must fetch the image's texture through the
    temporal layers, and msh-first-frame trained that way let the background fade after
    frame 0 and ignored camera-motion requests (a pan moves texture it no longer had);
    repeated, every frame sees the image at full resolution and only has to move it.

    camera: ``(b, 2)`` requested camera motion (the background's screen motion, px/frame,
    as in :func:`encode_motion`), or None. Given, the repeated image on frame ``k`` is the
    image translated by ``k * camera`` (:func:`translate`): the maps already show the pan,
    and the network only has to keep the object still in the world and fill the edge the
    pan uncovers. Why: msh-first-frame-base, trained on plain repeated maps where only Pan
    images came with camera motion, answered a camera request on any other image by moving
    the object (50% camera/object split, chance); with warped maps at sampling time the
    same weights split 64 of 64 (camera error 0.11 px/frame for 0.80 asked). Warping a
    condition image by the requested camera is the geometric route of camera control
    (depth-warped views in ViewCrafter / CamI2V; a pan needs no depth).
    """
    image = check_image(image)
    b, _, h, w = image.shape
    maps = image.new_zeros(b, FIRST_FRAME_CHANNELS, frames, h, w)
    if repeat:
        maps[:, :3] = image[:, :, None]
        if camera is not None:
            camera = torch.as_tensor(camera, dtype=image.dtype, device=image.device)
            if camera.shape != (b, 2) or not torch.isfinite(camera).all():
                raise ValueError(f"camera: expected finite (b, 2) = ({b}, 2) px/frame, got "
                                 f"{tuple(camera.shape)}")
            pan = camera.abs().sum(1) > 0        # a still camera keeps the image bit-exact
            if pan.any():
                k = torch.arange(frames, dtype=image.dtype, device=image.device)
                shifts = k[None, :, None] * camera[pan, None]                # (p, t, 2)
                frames_img = image[pan, None].expand(-1, frames, -1, -1, -1)  # (p, t, 3, h, w)
                moved = translate(rearrange(frames_img, "p t c h w -> (p t) c h w"),
                                  rearrange(shifts, "p t xy -> (p t) xy"))
                maps[pan, :3] = rearrange(moved, "(p t) c h w -> p c t h w", t=frames)
    elif camera is not None:
        raise ValueError("camera: warping needs the repeated layout (repeat=True)")
    maps[:, :3, 0] = image
    maps[:, 3, 0] = 1.0
    return maps


def translate(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """``images (n, c, h, w)`` with their content moved by ``shift (n, 2)`` = (dx, dy) px
    (sub-pixel: bilinear; the uncovered edge repeats the border, as a pan of a wider
    background would roughly show)."""
    n, _, h, w = images.shape
    theta = images.new_zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    # affine_grid works in [-1, 1] coordinates: a content shift of +dx px samples at x - dx
    theta[:, 0, 2] = -2.0 * shift[:, 0] / w
    theta[:, 1, 2] = -2.0 * shift[:, 1] / h
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)


def first_frame_hook(image: torch.Tensor, until: float = 0.0, inner=None):
    """``x0_hook`` replacing frame 0 of the predicted clip with ``image (b, 3, h, w)``.

    until: replace only while the sampling time ``t > until`` (0 = at every step, so the
    result's frame 0 is exactly the image). inner: another hook to run afterwards (chaining).
    """
    image = check_image(image)

    def hook(x0: torch.Tensor, t: float, x_t: torch.Tensor | None = None) -> torch.Tensor:
        if float(t) > until or until == 0.0:
            x0 = x0.clone()
            x0[:, :, 0] = image.to(x0.device, x0.dtype).expand(x0.shape[0], -1, -1, -1)
        if inner is not None:
            return inner(x0, t, x_t)
        return x0

    return hook


# MovingShapes objects and pans move 0.3-1.5 px/frame at 32x32: divided by 1 px/frame they
# reach the vector embedding at the size of its on/off flags. (4 px/frame left them at
# ~0.15, and msh-first-frame's first run ignored the request: 50% camera/object split at
# 3,300 and 4,041 steps, chance.)
MOTION_SCALE = 1.0


def encode_motion(camera=None, obj=None, scale: float = MOTION_SCALE) -> torch.Tensor:
    """Motion-type condition ``(6,)``: camera and object motion chosen independently.

    camera / obj: ``(dx, dy)`` in px/frame, or None for "unspecified" (its flag is 0 and its
    values 0, so the model falls back on its prior for that motion type). Values are divided
    by ``scale`` (px/frame) to stay near [-1, 1]. Camera motion moves the whole frame
    (background and objects); object motion is relative to the background.
    """
    out = torch.zeros(MOTION_DIM)
    for off, v, name in ((0, camera, "camera"), (3, obj, "obj")):
        if v is None:
            continue
        v = torch.as_tensor(v, dtype=torch.float32)
        if v.shape != (2,) or not torch.isfinite(v).all():
            raise ValueError(f"{name}: expected (dx, dy) finite px/frame, got {v.tolist()}")
        out[off:off + 2] = v / scale
        out[off + 2] = 1.0
    return out


def motion_from_truth(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth camera and object motion of a ``render_batch(..., truth=True)`` batch.

    Returns ``camera (b, 2)`` -- the apparent motion of the background on screen, px/frame
    (a pan to the right moves the background left: negative dx), the convention of
    :func:`encode_motion` and :func:`measure_motion` -- and ``object (b, 2)``: object 0's
    screen velocity minus the camera part (its motion in the world), NaN when the object
    is missing. Zooms have no single translation: their camera part is 0.
    """
    cam = batch["camera"].float()                                    # (b, t, 2) offsets
    camera = -(cam[:, 1:] - cam[:, :-1]).mean(1)                      # (b, 2)
    tr = batch["trajectories"][:, 0].float()                          # (b, t, 2)
    vel = (tr[:, 1:] - tr[:, :-1]).nanmean(1)
    return camera, vel - camera


def measure_motion(video: torch.Tensor, masks: torch.Tensor | None = None,
                   flow: torch.Tensor | None = None) -> dict:
    """Split one clip's motion into camera and object parts (px/frame).

    video ``(3, t, h, w)``; masks ``(k, t, h, w)`` bool of the objects (None: no object
    part); flow ``(2, t-1, h, w)`` (None: estimated with ``analysis.motion.estimate_flow``).
    Camera = median flow outside the object masks per frame pair; object = mean of the
    object's centroid velocity minus the camera velocity. Returns ``{"camera": (dx, dy),
    "object": (dx, dy) or None}`` averaged over the clip.
    """
    if video.ndim != 4:
        raise ValueError(f"video: expected one clip (3, t, h, w), got {tuple(video.shape)}")
    if flow is None:
        from viddiff_mini.analysis.motion import estimate_flow
        flow = estimate_flow(video[None])[0]
    bg = torch.ones(flow.shape[1:], dtype=torch.bool)
    if masks is not None:
        if masks.shape[-3:] != video.shape[1:]:
            raise ValueError(f"masks: expected (k, t, h, w) with (t, h, w) = "
                             f"{tuple(video.shape[1:])}, got {tuple(masks.shape)}")
        fg = masks.any(0)
        bg = ~(fg[:-1] | fg[1:])
    cam = torch.stack([torch.stack([flow[c, i][bg[i]].median() if bg[i].any() else flow.new_tensor(0.0)
                                    for c in range(2)]) for i in range(flow.shape[1])])  # (t-1, 2)
    out = {"camera": tuple(cam.mean(0).tolist()), "object": None}
    if masks is not None:
        from .trajectory import mask_centroids
        tr = mask_centroids(masks[0])
        vel = tr[1:] - tr[:-1] - cam
        ok = torch.isfinite(vel).all(-1)
        if ok.any():
            out["object"] = tuple(vel[ok].mean(0).tolist())
    return out


def psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None,
         data_range: float = 2.0) -> float:
    """PSNR in dB of ``a`` vs ``b`` (same shape, values in [-1, 1] so range 2).

    mask: optional bool, broadcastable to ``a``: only those pixels count. Identical -> inf.
    """
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    err = (a.float() - b.float()) ** 2
    if mask is not None:
        m = torch.broadcast_to(mask.bool(), err.shape)
        if not m.any():
            raise ValueError("mask: selects no pixels")
        mse = err[m].mean()
    else:
        mse = err.mean()
    return float("inf") if float(mse) == 0.0 else float(10 * torch.log10(data_range**2 / mse))


def ssim_lite(a: torch.Tensor, b: torch.Tensor, window: int = 7, data_range: float = 2.0) -> float:
    """SSIM with a uniform ``window`` x ``window`` box (not the Gaussian of the paper).

    a, b: images ``(b, c, h, w)`` or ``(c, h, w)``. 1 = identical structure.
    """
    if a.shape != b.shape:
        raise ValueError(f"ssim_lite: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    pool = lambda x: F.avg_pool2d(x, window, 1, window // 2, count_include_pad=False)  # noqa: E731
    mu_a, mu_b = pool(a), pool(b)
    va = pool(a * a) - mu_a**2
    vb = pool(b * b) - mu_b**2
    cov = pool(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return float(s.mean())


def first_frame_fidelity(video: torch.Tensor, image: torch.Tensor) -> dict:
    """How faithfully frame 0 of ``video (b, 3, t, h, w)`` reproduces ``image (b, 3, h, w)``."""
    image = check_image(image, size=tuple(video.shape[-2:]))
    f0 = video[:, :, 0]
    image = image.to(f0.device).expand_as(f0)
    return {"psnr": psnr(f0, image), "ssim": ssim_lite(f0, image)}


def motion_diversity(videos: torch.Tensor) -> float:
    """Mean pairwise L2 distance (per pixel) between the frame differences of several samples.

    videos ``(n, 3, t, h, w)`` from the same first frame and different seeds: 0 means the
    model always animates the image the same way (it ignores the ambiguity of motion).
    """
    if videos.shape[0] < 2:
        raise ValueError("videos: need at least 2 samples to measure diversity")
    d = (videos[:, :, 1:] - videos[:, :, :-1]).flatten(1)
    dist = torch.cdist(d, d) / math.sqrt(d.shape[1])
    n = d.shape[0]
    return float(dist.sum() / (n * (n - 1)))


def animate(model, diffusion, image: torch.Tensor, frames: int = 16, cond: dict | None = None,
            mode: str = "both", steps: int = 50, sampler: str = "ddim", guidance=None,
            generator: torch.Generator | None = None, extra_hook=None,
            autoencoder=None) -> torch.Tensor:
    """Generate ``(b, 3, frames, h, w)`` clips starting from ``image (b, 3, h, w)``.

    mode: ``"concat"`` (only the conditioning maps; the model must have been trained with a
    first-frame concat group -- ``cond`` must already hold ``cond["concat"]`` built by
    ``compose.build_cond`` / ``compose.cond_for_spec``), ``"replace"`` (only the x0 hook;
    works with any model) or ``"both"``. autoencoder: a latent model's autoencoder (the
    replacement then runs on each step's decoded x0; see ``latent.sample_clips``).
    """
    if mode not in ("concat", "replace", "both"):
        raise ValueError(f"mode: expected 'concat', 'replace' or 'both', got {mode!r}")
    image = check_image(image)
    if mode in ("concat", "both") and (cond is None or "concat" not in cond):
        if mode == "concat":
            raise ValueError("cond: mode='concat' needs cond['concat'] with the first-frame maps "
                             "(build it with viddiff_mini.control.compose.cond_for_spec)")
    hook = first_frame_hook(image, inner=extra_hook) if mode in ("replace", "both") else extra_hook
    b, _, h, w = image.shape
    from viddiff_mini.latent import sample_clips
    return sample_clips(model, diffusion, (b, 3, frames, h, w), autoencoder, hook, cond=cond,
                        sampler=sampler, steps=steps, guidance=guidance, generator=generator,
                        device=image.device)
