"""viddiff_mini: a small, tested, fast video diffusion library for Chapter 11.

Video tensors are ``(b, c, t, h, w)``, float, in [-1, 1]; IO uses uint8 ``(t, h, w, c)``.
Sub-packages: ``data`` (MovingShapes-101, UCF-101, folders), ``diffusion`` (schedules,
objectives, samplers, guidance), ``nn`` (conv / attention / propagation variants),
``models`` (U-Net 3D, video DiT, lightweight), ``control``, ``analysis``, ``metrics``,
``grading``.
"""

__version__ = "0.1.0"
