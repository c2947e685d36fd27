"""Video diffusion networks behind one registry (``build_model(name, **kwargs)``).

Every model: ``forward(x (b, c, t, h, w), t (b,) float in [0, 1], cond: dict | None)``
returns ``(b, c_out, t, h, w)``; see CONTRACTS "Models" for the conditioning keys.
Registered: ``unet3d`` (UNet3D), ``dit`` (VideoDiT), ``unet2d`` (UNet2D, frame by frame)
and ``lightweight`` (VideoFromImage: a 2-D U-Net with motion modules).
"""

from . import dit, lightweight, unet3d  # noqa: F401  (importing registers the models)
from .dit import VideoDiT
from .lightweight import UNet2D, VideoFromImage
from .registry import MODELS, build_model, model_names, register_model
from .unet3d import UNet3D

__all__ = ["MODELS", "build_model", "model_names", "register_model", "UNet3D", "VideoDiT",
           "UNet2D", "VideoFromImage"]
