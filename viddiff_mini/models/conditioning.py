"""The generic conditioning keys (CONTRACTS "Models"), checked and prepared in one place.

``cond`` is a dict: ``label`` (b,) + ``label_keep``; ``context`` (b, n, context_dim) +
``context_mask`` (b, n) + ``context_keep``; ``concat`` (b, concat_channels, t, h, w) +
``concat_keep`` (at the clip's resolution: a latent model folds them, ``concat_fold``); ``vector`` (b, vector_dim) + ``vector_keep``. A key the model was not
built for raises ``ValueError`` naming the constructor argument; a condition the model was
built for but that is missing counts as *dropped* (null label / null vector / null context
token / zero maps), which is the unconditional branch of classifier-free guidance.
Used by :mod:`~viddiff_mini.models.dit` and :mod:`~viddiff_mini.models.lightweight`.
"""

from __future__ import annotations

import torch
from einops import rearrange

COND_ARGS = {"label": "num_classes", "context": "context_dim", "concat": "concat_channels",
             "vector": "vector_dim"}
COND_KEYS = ("label", "label_keep", "context", "context_mask", "context_keep", "concat",
             "concat_keep", "vector", "vector_keep")


def check_cond(cond: dict | None, owner: str, built: dict[str, object]) -> dict:
    """Validate ``cond`` keys against what the model was built with; drop ``None`` values.

    ``built`` maps a constructor argument (``"num_classes"``, ...) to its value (falsy =
    that condition is disabled).
    """
    if cond is None:
        return {}
    if not isinstance(cond, dict):
        raise TypeError(f"cond: expected a dict of condition tensors, got {type(cond).__name__}")
    for key, value in cond.items():
        if key not in COND_KEYS:
            raise ValueError(f"cond[{key!r}]: unknown condition key; {owner} understands "
                             f"{list(COND_KEYS)} (encode text etc. into 'context' first)")
        base = key.split("_")[0]
        arg = COND_ARGS[base]
        if value is not None and not built.get(arg):
            raise ValueError(f"cond[{key!r}] given but this {owner} was built without {arg}; "
                             f"construct it with {arg}=... to use {base!r}")
    return {k: v for k, v in cond.items() if v is not None}


def time_batch(t, b: int, device) -> torch.Tensor:
    """Diffusion time as ``(b,)`` float: a scalar is broadcast, a wrong size is an error."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    if t.numel() == 1:
        return t.reshape(1).expand(b)
    if t.numel() != b:
        raise ValueError(f"t: expected shape ({b},) or a scalar, got {tuple(t.shape)}")
    return t.reshape(b)


def concat_input(x: torch.Tensor, cond: dict, concat_channels: int,
                 fold: tuple[int, int, int] = (1, 1, 1)) -> torch.Tensor:
    """``x (b, c, t, h, w)`` -> ``(b, c + concat_channels * ft * fh * fw, t, h, w)``.

    Pixel-aligned maps come at the *clip's* resolution ``(b, concat_channels, t * ft,
    h * fh, w * fw)``. A latent model (``fold`` = the autoencoder's downsampling factors)
    sees them space-to-depth folded onto its coarser grid: every pixel-level value kept (a
    1 px trajectory offset or frame-0 texture survives), no learned encoder needed. With
    ``fold = (1, 1, 1)`` (pixel space) this is a plain concatenation. Dropped maps are zeros.
    """
    if not concat_channels:
        return x
    ft, fh, fw = fold
    b, _, t, h, w = x.shape
    maps = cond.get("concat")
    if maps is None:
        return torch.cat([x, x.new_zeros(b, concat_channels * ft * fh * fw, t, h, w)], dim=1)
    if maps.ndim == 4 and t == 1 and ft == 1:  # image path: (b, cc, h, w)
        maps = maps[:, :, None]
    want = (b, concat_channels, t * ft, h * fh, w * fw)
    if tuple(maps.shape) != want:
        why = f", the clip grid of a latent {tuple(x.shape[2:])} x fold {fold}" \
            if fold != (1, 1, 1) else ""
        raise ValueError(f"cond['concat']: expected shape {want} (concat_channels="
                         f"{concat_channels}{why}), got {tuple(maps.shape)}")
    keep = cond.get("concat_keep")
    if keep is not None:
        maps = maps * keep.to(maps.dtype)[:, None, None, None, None]
    if fold != (1, 1, 1):
        maps = rearrange(maps, "b c (t ft) (h fh) (w fw) -> b (c ft fh fw) t h w",
                         ft=ft, fh=fh, fw=fw)
    return torch.cat([x, maps.to(x.dtype)], dim=1)


def check_fold(fold) -> tuple[int, int, int]:
    """``concat_fold`` as a triple of positive ints (a model constructor argument)."""
    fold = tuple(fold)
    if len(fold) != 3 or not all(isinstance(f, int) and f >= 1 for f in fold):
        raise ValueError(f"concat_fold: expected three positive ints (ft, fh, fw), got {fold!r}")
    return fold


def context_inputs(cond: dict, b: int, context_dim: int | None, device):
    """``(context (b, n, d), mask (b, n) | None, keep (b,) | None)``, or Nones if disabled.

    A missing context becomes zero tokens: every row then attends only to the cross-
    attention's learned null token.
    """
    if not context_dim:
        return None, None, None
    ctx = cond.get("context")
    if ctx is None:
        ctx = torch.zeros(b, 0, context_dim, device=device)
    if ctx.ndim != 3 or ctx.shape[0] != b or ctx.shape[2] != context_dim:
        raise ValueError(f"cond['context']: expected shape ({b}, n, {context_dim}) "
                         f"(context_dim={context_dim}), got {tuple(ctx.shape)}")
    mask = cond.get("context_mask")
    if mask is not None and tuple(mask.shape) != tuple(ctx.shape[:2]):
        raise ValueError(f"cond['context_mask']: expected shape {tuple(ctx.shape[:2])}, "
                         f"got {tuple(mask.shape)}")
    return ctx, mask, cond.get("context_keep")
