"""One registry for all models: ``name -> builder``, so configs and the CLI name a model by string.

>>> from viddiff_mini.models import build_model
>>> model = build_model("unet3d", base_channels=16)
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: ``@register_model("unet3d") class UNet3D(nn.Module): ...`` (class or function)."""
    def wrap(builder):
        if name in MODELS and MODELS[name] is not builder:
            raise ValueError(f"model name {name!r} is already registered to {MODELS[name]!r}")
        MODELS[name] = builder
        return builder
    return wrap


def model_names() -> list[str]:
    """Sorted list of registered model names."""
    return sorted(MODELS)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model: ``build_model("unet3d", base_channels=32, conv="full3d")``.

    Unknown names raise ``ValueError`` listing the registered names.
    """
    if name not in MODELS:
        raise ValueError(f"model {name!r} unknown; registered models: {model_names()}")
    return MODELS[name](**kwargs)
