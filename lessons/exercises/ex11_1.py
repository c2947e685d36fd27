"""Exercises for lesson 11.1 (data and baselines). Fill in each function.

Each function raises ``NotImplementedError("Exercise 11.1.<k><letter>: ...")`` until you
write it. Check your work in a notebook with::

    from viddiff_mini.grading import check
    check("11.1.1a")

or from a terminal with ``pytest tests/exercises -k ex11_1`` (add ``--exercise 11.1.1a``
for one exercise). Video tensors are ``(b, c, t, h, w)``, float, in [-1, 1].
"""

from __future__ import annotations

import torch


# =========================================================================== Exercise 11.1.1a
def interpolate_frames(video: torch.Tensor, factor: int, method: str = "linear",
                       flow: torch.Tensor | None = None, max_shift: int = 4) -> torch.Tensor:
    """Frame interpolation baseline: insert ``factor - 1`` frames between each pair.

    Args:
        video: ``(b, c, t, h, w)`` float in [-1, 1], ``t >= 2``.
        factor: integer >= 1; the output has ``(t - 1) * factor + 1`` frames.
        method: ``"linear"`` blends the two neighbours: the frame at fraction
            ``a = k / factor`` of the way from frame ``i`` to ``i + 1`` is
            ``(1 - a) * frame_i + a * frame_{i+1}``.
            ``"flow"`` moves both neighbours along the motion before blending:
            ``(1 - a) * frame_i(p - a * F) + a * frame_{i+1}(p + (1 - a) * F)``,
            where ``F`` is the motion from frame ``i`` to ``i + 1`` in pixels (sample with
            ``torch.nn.functional.grid_sample``).
        flow: optional ``(b, 2, t - 1, h, w)`` forward flow ``(dx, dy)`` in pixels from frame
            ``i`` to ``i + 1``. When ``None`` (method ``"flow"``), estimate one global
            translation per frame pair by block matching: try every integer shift
            ``(dx, dy)`` with ``|dx|, |dy| <= max_shift`` and keep the one with the smallest
            mean absolute difference on the overlapping region.
        max_shift: search radius in pixels for the estimated flow.

    Returns:
        ``(b, c, (t - 1) * factor + 1, h, w)``, same dtype; the original frames are kept
        exactly at positions ``0, factor, 2 * factor, ...``.

    Raises:
        ValueError: a bad ``video`` shape, ``factor < 1``, an unknown ``method`` or a
            ``flow`` of the wrong shape.
    """
    raise NotImplementedError(
        "Exercise 11.1.1a: interpolate frames by linear blending and by flow warping")
