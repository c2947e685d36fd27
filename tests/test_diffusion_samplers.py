"""Samplers against a closed-form answer.

For Gaussian data x0 ~ N(mu, s^2) (independently per channel) the optimal denoiser is known
exactly: with x_t = a x0 + sigma eps,

    E[x0 | x_t] = mu + a s^2 / (a^2 s^2 + sigma^2) * (x_t - a mu).

A "model" that returns this estimate (converted into the objective's parameterisation) is the
ideal network, so every sampler driven by it must reproduce the data distribution. We check
the sample mean and standard deviation per channel.
"""

import pytest
import torch

from viddiff_mini.diffusion import Diffusion, ddim_step, make_grid, time_grid

MU = torch.tensor([0.5, -0.3])
STD = torch.tensor([0.2, 0.6])


def gaussian_denoiser(diffusion: Diffusion):
    """The Bayes-optimal prediction for N(MU, STD^2) data, in ``diffusion``'s objective."""
    def model(x_t, t, cond=None):
        alpha, sigma = diffusion.alpha_sigma(t, x_t)
        mu = MU.view(1, -1, 1, 1, 1)
        var = STD.view(1, -1, 1, 1, 1) ** 2
        x0 = mu + alpha * var / (alpha**2 * var + sigma**2) * (x_t - alpha * mu)
        eps = (x_t - alpha * x0) / sigma
        return diffusion.objective.target(x0, eps, alpha, sigma)
    return model


CASES = [
    ("cosine", "v", "ddim", 0.0), ("cosine", "eps", "ddim", 0.0), ("cosine", "v", "ddim", 1.0),
    ("cosine", "v", "ddpm", 0.0), ("cosine", "v", "euler", 0.0), ("linear", "eps", "ddpm", 0.0),
    ("linear", "v", "ddim", 0.0), ("flow", "flow", "euler", 0.0), ("flow", "flow", "ddim", 0.0),
    ("flow", "v", "ddpm", 0.0),
]


@pytest.mark.parametrize("schedule,objective,sampler,eta", CASES)
def test_sampler_recovers_gaussian_mean_and_std(schedule, objective, sampler, eta):
    diffusion = Diffusion(schedule=schedule, objective=objective)
    g = torch.Generator().manual_seed(0)
    x = diffusion.sample(gaussian_denoiser(diffusion), (4000, 2, 1, 2, 2), sampler=sampler,
                         steps=400, eta=eta, generator=g, clip_x0=False)
    per_channel = x.transpose(0, 1).reshape(2, -1)
    mean, std = per_channel.mean(1), per_channel.std(1)
    # 16,000 values per channel: sampling error of the mean ~ 0.6 / 126 = 0.005
    assert torch.allclose(mean, MU, atol=0.03), f"{schedule}/{objective}/{sampler}: mean {mean}"
    # the samplers are first-order: the std deficit shrinks with the step count (7% at 100
    # steps, 2-4% at 400 on a uniform grid, where the low-noise end is coarse)
    assert torch.allclose(std, STD, rtol=0.05), f"{schedule}/{objective}/{sampler}: std {std}"


def test_deterministic_ddim_is_reproducible_and_eta_adds_noise():
    diffusion = Diffusion("cosine", "v")
    model = gaussian_denoiser(diffusion)
    x_T = torch.randn(8, 2, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    a = diffusion.sample(model, x_T.shape, x_T=x_T, steps=20, clip_x0=False)
    b = diffusion.sample(model, x_T.shape, x_T=x_T, steps=20, clip_x0=False)
    assert torch.equal(a, b)
    c = diffusion.sample(model, x_T.shape, x_T=x_T, steps=20, eta=1.0, clip_x0=False,
                         generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, c)


def test_ddim_step_with_the_true_x0_and_eps_lands_on_the_forward_process():
    """x_s = alpha_s x0 + sigma_s eps exactly when x0 and eps are the true ones (eta = 0)."""
    diffusion = Diffusion("cosine", "v")
    grid = make_grid(diffusion.schedule, 10)
    x0, eps = torch.randn(2, 3, 2, 4, 4), torch.randn(2, 3, 2, 4, 4)
    p_t, p_s = grid[3], grid[4]
    x_s = ddim_step(x0, eps, p_t, p_s, 0.0, None)
    assert torch.allclose(x_s, p_s.alpha * x0 + p_s.sigma * eps, atol=1e-6)


def test_time_grid_runs_from_t_max_to_zero():
    grid = time_grid(5, t_max=0.9)
    assert grid[0] == pytest.approx(0.9) and grid[-1] == 0.0 and len(grid) == 6
    assert all(a > b for a, b in zip(grid, grid[1:]))


def test_callback_and_x0_hook_see_every_step():
    diffusion = Diffusion("cosine", "v")
    seen, hooked = [], []

    def hook(x0, t):
        hooked.append(t)
        return x0.clamp(max=0.0)  # a constraint: the result must respect it

    x = diffusion.sample(gaussian_denoiser(diffusion), (4, 2, 1, 2, 2), steps=7,
                         callback=lambda i, t, x_t, x0: seen.append(i), x0_hook=hook,
                         generator=torch.Generator().manual_seed(0), clip_x0=False)
    assert seen == list(range(7)) and len(hooked) == 7
    assert (x <= 1e-6).all()


def test_bad_sampler_arguments_are_named():
    diffusion = Diffusion()
    model = gaussian_denoiser(diffusion)
    with pytest.raises(ValueError, match="sampler"):
        diffusion.sample(model, (1, 2, 1, 2, 2), sampler="heun")
    with pytest.raises(ValueError, match="steps"):
        diffusion.sample(model, (1, 2, 1, 2, 2), steps=0)
    with pytest.raises(ValueError, match="eta"):
        diffusion.sample(model, (1, 2, 1, 2, 2), eta=2.0)
    with pytest.raises(ValueError, match="x_T"):
        diffusion.sample(model, (1, 2, 1, 2, 2), x_T=torch.zeros(2, 2, 1, 2, 2))
