"""Video diffusion networks behind one registry (``build_model(name, **kwargs)``).

Every model: ``forward(x (b, c, t, h, w), t (b,) float in [0, 1], cond: dict | None)``
returns ``(b, c_out, t, h, w)``; see CONTRACTS "Models" for the conditioning keys.
"""

from . import unet3d  # noqa: F401  (import registers "unet3d")
from .registry import MODELS, build_model, model_names, register_model
from .unet3d import UNet3D

# The builder of models/dit.py and models/lightweight.py appends their imports here
# (``from . import dit, lightweight``, with a noqa F401 marker) so they register too.

__all__ = ["MODELS", "build_model", "model_names", "register_model", "UNet3D"]
