"""Latent diffusion glue: a run with ``latent`` set diffuses in an autoencoder's latent space.

    cfg = get_preset("cpu", latent="msh-ae")      # a shipped autoencoder, by name
    cfg = get_preset("cpu", latent="runs/ae")     # or a `viddiff train-ae` run folder / file

The trainer encodes every training clip with the (frozen) autoencoder and trains the
diffusion model on the latent; sampling runs the sampler on a latent-shaped tensor and
decodes the result. Everything else (objectives, samplers, CFG, EMA, exact resume, DDP) is
unchanged: the diffusion model cannot tell latents from pixels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from viddiff_mini.models.autoencoder import VideoAutoencoder


def resolve_autoencoder(spec: str) -> Path:
    """A run folder, an ``autoencoder.pt`` file or a pretrained name -> the weights file."""
    from viddiff_mini.train_ae import AE_FILE

    path = Path(spec)
    if path.is_dir() and (path / AE_FILE).exists():
        return path / AE_FILE
    if path.is_file():
        return path
    from viddiff_mini import pretrained
    if spec in pretrained.names(kind="autoencoder"):
        return pretrained.weights_path(spec)
    raise FileNotFoundError(
        f"latent {spec!r}: not an autoencoder run folder (with {AE_FILE}), file, or "
        f"pretrained autoencoder; pretrained autoencoders: "
        f"{', '.join(pretrained.names(kind='autoencoder')) or '(none)'}")


@lru_cache(maxsize=4)
def _load(path: str, device: str) -> VideoAutoencoder:
    from viddiff_mini.train_ae import load_autoencoder
    return load_autoencoder(path, device=device)


def autoencoder(spec: str, device: torch.device | str = "cpu") -> VideoAutoencoder:
    """The frozen autoencoder named by ``spec`` (see :func:`resolve_autoencoder`), loaded
    once per device and shared (eval mode, no gradients needed)."""
    return _load(str(resolve_autoencoder(spec).resolve()), str(torch.device(device)))


def load_latent(cfg, device: torch.device | str = "cpu") -> VideoAutoencoder | None:
    """The run's frozen autoencoder (cached), or None for a pixel-space run.

    Refuses an autoencoder trained on another clip shape, naming both. Every control works
    in latent space: label, text, style and attributes do not depend on the resolution, and
    the pixel-aligned maps of trajectory and first_frame are folded space-to-depth onto
    the latent grid by the model (``concat_fold``, set by ``train.build_model_for``)."""
    if not cfg.latent:
        return None
    ae = autoencoder(cfg.latent, device)
    meta = getattr(ae, "meta", {})
    trained = (meta.get("frames"), meta.get("size"))
    if None not in trained and trained != (cfg.frames, cfg.size):
        raise ValueError(
            f"latent {cfg.latent!r}: the autoencoder was trained on {trained[0]}x{trained[1]}"
            f"x{trained[1]} clips but the run asks for {cfg.frames}x{cfg.size}x{cfg.size}; "
            f"train one at this shape (`viddiff train-ae`) or use --frames {trained[0]} "
            f"--size {trained[1]}")
    ae.latent_shape(cfg.frames, cfg.size)  # divisibility, with the factor named
    if cfg.temporal_loss not in ("none", "frame_diff"):
        raise ValueError(f"latent {cfg.latent!r}: temporal loss {cfg.temporal_loss!r} needs "
                         f"pixels (optical flow); use 'none' or 'frame_diff'")
    return ae


@torch.no_grad()
def round_trip(ae: VideoAutoencoder, videos: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """``ae.decode(ae.encode(videos))`` clamped to [-1, 1], in batches, on ``videos``'
    device: ``(n, 3, t, h, w)`` -> the same shape. On real clips: what a latent model that
    reproduced their latents would show (the decoder's blur, colour shifts and motion
    included; metrics/floors.py)."""
    dev = next(ae.parameters()).device
    return torch.cat([ae.decode(ae.encode(videos[i:i + batch].to(dev).float())).clamp(-1, 1)
                      .to(videos.device) for i in range(0, len(videos), batch)])


def data_shape(cfg) -> tuple[int, int, int, int]:
    """(c, t, h, w) of what the diffusion model sees: pixels or the autoencoder's latent."""
    ae = load_latent(cfg)
    if ae is None:
        return (3, cfg.frames, cfg.size, cfg.size)
    return ae.latent_shape(cfg.frames, cfg.size)


def check_model_channels(cfg, model_kwargs: dict) -> None:
    """Refuse a model whose input channels are not the latent's (both shapes named)."""
    if not cfg.latent:
        return
    shape = data_shape(cfg)
    for key in ("in_channels", "out_channels"):
        c = model_kwargs.get(key)
        if c is not None and c != shape[0]:
            raise ValueError(
                f"latent {cfg.latent!r}: the autoencoder's latent is {tuple(shape)} "
                f"(c, t, h, w) but the model's {key} is {c}; drop {key} from model_kwargs "
                f"or set it to {shape[0]}")


def pixel_hook(hook, ae: VideoAutoencoder):
    """An ``x0_hook`` written for pixels (first-frame replacement, masked blending, ...) made
    to work on a latent model: each step's latent x0 is decoded, ``hook`` edits the pixels,
    and the result is encoded back. Costs one decode and one encode per sampling step; the
    edit survives up to the autoencoder's round-trip error (msh-ae: 34 dB PSNR).

    hook: ``hook(x0, t)`` or ``hook(x0, t, x_t)`` on pixels ``(b, 3, t, h, w)`` (``x_t`` is
    passed as None: the noisy latent has no pixel version).
    """
    from viddiff_mini.diffusion.core import _n_positional

    takes_x_t = _n_positional(hook) >= 3      # the rule Diffusion.sample applies to hooks

    def latent_hook(z0: torch.Tensor, t: float) -> torch.Tensor:
        x0 = ae.decode(z0.float())
        x0 = hook(x0, t, None) if takes_x_t else hook(x0, t)
        return ae.encode(x0.clamp(-1, 1)).to(z0.dtype)

    return latent_hook


def sample_clips(model, diffusion, shape, autoencoder: VideoAutoencoder | None = None,
                 x0_hook=None, hook_space: str = "pixel", **sample_kwargs) -> torch.Tensor:
    """Pixel clips ``shape = (b, 3, t, h, w)`` from a pixel model or, with ``autoencoder``, a
    latent one: the sampler then runs on the latent shape without clamping x0 to [-1, 1]
    (standardised latents are not confined there) and the result is decoded in full
    precision (also under a caller's autocast). ``x0_hook`` acts on pixels (``hook_space=
    "pixel"``: through :func:`pixel_hook` for a latent model) or, with ``"latent"``, on the
    latent x0 itself (a latent model's motion prior, at no decode cost). ``sample_kwargs``
    go to ``Diffusion.sample`` (cond, steps, sampler, guidance, generator, device, ...)."""
    if hook_space not in ("pixel", "latent"):
        raise ValueError(f"hook_space: expected 'pixel' or 'latent', got {hook_space!r}")
    if autoencoder is None:
        return diffusion.sample(model, tuple(shape), x0_hook=x0_hook, **sample_kwargs)
    b, _, t, h, w = shape
    if x0_hook is not None and hook_space == "pixel":
        x0_hook = pixel_hook(x0_hook, autoencoder)
    z = diffusion.sample(model, (b, *autoencoder.latent_shape(t, h)), x0_hook=x0_hook,
                         clip_x0=False, **sample_kwargs)
    with torch.autocast(z.device.type, enabled=False):
        return autoencoder.decode(z.float()).clamp(-1, 1)
