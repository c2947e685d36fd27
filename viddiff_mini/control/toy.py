"""A closed-form denoiser over a handful of clips: a stand-in "model" for control demos.

For data that is exactly a finite set of clips ``{x_i}``, the optimal denoiser is known in
closed form: ``E[x0 | x_t] = sum_i w_i x_i`` with ``w = softmax(-||x_t - alpha x_i||^2 /
(2 sigma^2))``. :class:`EmpiricalDenoiser` returns that estimate converted to the
diffusion's objective (eps / v / flow), so every control code path (first-frame
replacement, masked blending, physics guidance, per-condition CFG plumbing) can be run and
tested in milliseconds without a trained network. It ignores ``cond``: what it shows is
what the *sampler-side* controls do on their own. A trained model is what the gpu preset
measures.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EmpiricalDenoiser"]


class EmpiricalDenoiser(nn.Module):
    """``model(x_t, t, cond) -> prediction`` for a diffusion over the clips ``(n, c, t, h, w)``.

    temperature > 1 softens the weights (mixes clips more), which makes samples differ
    from the memorised clips -- useful to show guidance pulling a sample toward a constraint.
    """

    def __init__(self, clips: torch.Tensor, diffusion, temperature: float = 1.0):
        super().__init__()
        if clips.ndim != 5:
            raise ValueError(f"clips: expected (n, c, t, h, w), got {tuple(clips.shape)}")
        self.register_buffer("clips", clips.float())
        self.diffusion, self.temperature = diffusion, float(temperature)
        self._dummy = nn.Parameter(torch.zeros(()), requires_grad=False)  # gives a device

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict | None = None) -> torch.Tensor:
        alpha, sigma = self.diffusion.alpha_sigma(t, x_t)          # (b, 1, 1, 1, 1)
        diff = x_t[:, None] - alpha[:, None] * self.clips[None]    # (b, n, c, t, h, w)
        d2 = diff.flatten(2).pow(2).sum(-1)                        # (b, n)
        s2 = sigma.flatten().clamp_min(1e-4)[:, None] ** 2
        w = torch.softmax(-d2 / (2 * s2 * self.temperature), dim=1)
        x0 = torch.einsum("bn,nd->bd", w, self.clips.flatten(1)).view_as(x_t)
        eps = (x_t - alpha * x0) / sigma.clamp_min(1e-4)
        return self.diffusion.objective.target(x0, eps, alpha, sigma)
