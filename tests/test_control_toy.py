"""control/toy.py: the closed-form denoiser used by the control demos and tests."""

from __future__ import annotations

import pytest
import torch

from viddiff_mini.control.toy import EmpiricalDenoiser
from viddiff_mini.diffusion import Diffusion


@pytest.mark.parametrize("objective", ["eps", "v", "flow"])
def test_low_noise_recovers_the_nearest_clip(objective):
    schedule = "flow" if objective == "flow" else "cosine"
    d = Diffusion(schedule=schedule, objective=objective)
    clips = torch.rand(3, 3, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model = EmpiricalDenoiser(clips, d)
    t = torch.full((3,), 0.05)
    x_t = d.q_sample(clips, t, 0.01 * torch.randn_like(clips))
    x0 = d.predict_x0(model, x_t, t)
    assert torch.allclose(x0, clips, atol=1e-3)


def test_samples_are_memorised_clips_and_bad_input():
    d = Diffusion()
    clips = torch.rand(2, 3, 2, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1
    out = d.sample(EmpiricalDenoiser(clips, d), (4, 3, 2, 4, 4), steps=20,
                   generator=torch.Generator().manual_seed(0))
    dist = torch.cdist(out.flatten(1), clips.flatten(1)).min(1).values
    assert (dist < 0.05).all(), dist
    with pytest.raises(ValueError, match="clips"):
        EmpiricalDenoiser(torch.zeros(3, 4, 4), d)
