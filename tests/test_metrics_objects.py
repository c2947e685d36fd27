"""Object-level checks: motion direction from flow, colour drift, mask persistence."""

from __future__ import annotations

import torch

from viddiff_mini.metrics.objects import (
    colour_drift,
    flow_displacement,
    mask_persistence,
    motion_direction_agreement,
    object_tracks,
)


def moving_square(dx=1, dy=0, frames=8, size=24, colour=(1.0, -1.0, -1.0), fade=False):
    """A 4x4 square moving (dx, dy) px per frame on a grey background: (1, 3, t, s, s)."""
    v = torch.full((1, 3, frames, size, size), -0.2)
    for t in range(frames):
        x0, y0 = 4 + dx * t, 10 + dy * t
        c = torch.tensor(colour) * (1 - 0.12 * t if fade else 1.0)
        v[0, :, t, y0:y0 + 4, x0:x0 + 4] = c[:, None, None]
    return v


def test_tracks_follow_a_moving_square():
    tr = object_tracks(moving_square(dx=2))
    c = tr["centroid"][0]
    assert torch.allclose(c[1:, 0] - c[:-1, 0], torch.full((7,), 2.0))
    assert torch.allclose(c[:, 1], torch.full((8,), 11.5))
    assert torch.equal(tr["area"][0], torch.full((8,), 16.0))
    assert colour_drift(tr)[0] == 0 and mask_persistence(tr)[0] == 1


def test_colour_drift_sees_a_fading_object():
    assert colour_drift(object_tracks(moving_square(dx=2, fade=True)))[0] > 0.1


def test_flow_displacement_points_the_way_the_square_moves():
    right = flow_displacement(moving_square(dx=1))[0]
    down = flow_displacement(moving_square(dx=0, dy=1))[0]
    assert right[0] > 3 and abs(right[1]) < 1.5
    assert down[1] > 3 and abs(down[0]) < 1.5


def test_flow_displacement_ignores_background_flicker():
    # a generated clip's background flickers a little: flow on it must not dilute the
    # object's motion (it shrank msh-class8's ~10 px motions to ~2.5 px before the gate)
    clean = moving_square(dx=1)
    g = torch.Generator().manual_seed(0)
    noisy = clean + 0.04 * torch.randn(clean.shape, generator=g)
    d_clean, d_noisy = flow_displacement(clean)[0], flow_displacement(noisy)[0]
    assert d_noisy[0] > 0.7 * d_clean[0] and abs(d_noisy[1]) < 1.5


def test_direction_agreement_hand_worked():
    real = torch.tensor([[5.0, 0.0], [6.0, 0.0],       # class 0 goes right
                         [5.0, 0.0], [-5.0, 0.0]])     # class 1 goes either way: skipped
    real_y = torch.tensor([0, 0, 1, 1])
    samples = torch.tensor([[5.0, 0.5], [-5.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    sample_y = torch.tensor([0, 0, 0, 1])
    out = motion_direction_agreement(samples, real, sample_y, real_y)
    # right way and long enough; wrong way; right way but too short (< half of 5.5)
    assert out == {"motion_direction_accuracy": 1 / 3, "motion_direction_n": 3,
                   "motion_direction_classes": 1}
