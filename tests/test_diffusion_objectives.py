"""Objective conversions are exact inverses, and the loss is zero for an oracle model."""

import pytest
import torch

from viddiff_mini.diffusion import (
    OBJECTIVES,
    Diffusion,
    eps_to_x0,
    flow_to_x0_eps,
    get_objective,
    v_to_x0_eps,
    x0_eps_to_flow,
    x0_eps_to_v,
    x0_to_eps,
)

SHAPE = (4, 3, 5, 6, 7)  # (b, c, t, h, w)


def _random_problem(schedule="cosine", seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    eps = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    t = torch.rand(SHAPE[0], generator=g, dtype=torch.float64) * 0.98 + 0.01
    d = Diffusion(schedule)
    alpha, sigma = d.schedule.alpha_sigma(t)
    alpha, sigma = alpha.view(-1, 1, 1, 1, 1), sigma.view(-1, 1, 1, 1, 1)
    return x0, eps, alpha, sigma, alpha * x0 + sigma * eps


@pytest.mark.parametrize("schedule", ["cosine", "linear", "flow"])
def test_pairwise_conversions_round_trip(schedule):
    x0, eps, alpha, sigma, x_t = _random_problem(schedule)
    torch.testing.assert_close(eps_to_x0(eps, x_t, alpha, sigma), x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(x0_to_eps(x0, x_t, alpha, sigma), eps, atol=1e-5, rtol=0)
    x0_v, eps_v = v_to_x0_eps(x0_eps_to_v(x0, eps, alpha, sigma), x_t, alpha, sigma)
    torch.testing.assert_close(x0_v, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_v, eps, atol=1e-5, rtol=0)
    x0_u, eps_u = flow_to_x0_eps(x0_eps_to_flow(x0, eps), x_t, alpha, sigma)
    torch.testing.assert_close(x0_u, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_u, eps, atol=1e-5, rtol=0)


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("schedule", ["cosine", "linear", "flow"])
def test_objective_target_inverts(objective, schedule):
    x0, eps, alpha, sigma, x_t = _random_problem(schedule, seed=1)
    obj = get_objective(objective)
    x0_hat, eps_hat = obj.to_x0_eps(obj.target(x0, eps, alpha, sigma), x_t, alpha, sigma)
    torch.testing.assert_close(x0_hat, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(eps_hat, eps, atol=1e-5, rtol=0)
    # Whatever the prediction, the pair it maps to reproduces x_t.
    pred = torch.randn_like(x0)
    x0_p, eps_p = obj.to_x0_eps(pred, x_t, alpha, sigma)
    torch.testing.assert_close(alpha * x0_p + sigma * eps_p, x_t, atol=1e-5, rtol=0)


def test_v_formula_and_flow_is_true_velocity_for_flow_schedule():
    x0, eps, alpha, sigma, _ = _random_problem("flow")
    torch.testing.assert_close(x0_eps_to_v(x0, eps, alpha, sigma), alpha * eps - sigma * x0)
    # d/dt [(1 - t) x0 + t eps] = eps - x0
    d = Diffusion("flow", "flow")
    t = torch.full((SHAPE[0],), 0.3, dtype=torch.float64)
    h = 1e-6
    x_p = d.q_sample(x0, t + h, eps)
    x_m = d.q_sample(x0, t - h, eps)
    u = d.objective.target(x0, eps, None, None)
    torch.testing.assert_close((x_p - x_m) / (2 * h), u, atol=1e-4, rtol=0)


class _Oracle:
    """Returns the exact target, knowing the x0 and eps the loss will draw."""

    def __init__(self, diffusion, x0, eps):
        self.d, self.x0, self.eps = diffusion, x0, eps
        self.calls = []

    def __call__(self, x_t, t, cond):
        self.calls.append((x_t.shape, t.shape, cond))
        alpha, sigma = self.d.alpha_sigma(t, x_t)
        return self.d.objective.target(self.x0, self.eps, alpha, sigma)


@pytest.mark.parametrize("schedule,objective",
                         [("cosine", "v"), ("cosine", "eps"), ("linear", "eps"),
                          ("flow", "flow"), ("flow", "v"), ("cosine", "flow")])
def test_loss_is_zero_for_oracle(schedule, objective):
    d = Diffusion(schedule, objective)
    x0 = torch.rand(SHAPE) * 2 - 1
    seed = 123
    # Replay the loss's draws: t first (b,), then eps (like x0), from the same generator.
    g = torch.Generator().manual_seed(seed)
    _t = d.sample_t(SHAPE[0], g)
    eps = torch.randn(SHAPE, generator=g)
    model = _Oracle(d, x0, eps)
    cond = {"label": torch.zeros(SHAPE[0], dtype=torch.long)}
    loss = d.loss(model, x0, cond, generator=torch.Generator().manual_seed(seed))
    assert loss.ndim == 0 and float(loss) < 1e-10
    (x_shape, t_shape, seen_cond), = model.calls
    assert x_shape == SHAPE and t_shape == (SHAPE[0],) and seen_cond is cond
    # A wrong model has a positive loss.
    assert float(d.loss(lambda x, t, c: torch.zeros_like(x), x0, generator=g)) > 0.01


def test_loss_reductions_weights_and_fixed_t():
    d = Diffusion("cosine", "eps")
    x0 = torch.zeros(SHAPE)
    noise = torch.ones(SHAPE)
    t = torch.full((SHAPE[0],), 0.5)
    zero_model = lambda x, t, c: torch.zeros_like(x)  # noqa: E731  error = eps^2 = 1 everywhere
    assert float(d.loss(zero_model, x0, t=t, noise=noise)) == pytest.approx(1.0)
    per = d.loss(zero_model, x0, t=t, noise=noise, reduction="none")
    assert per.shape == (SHAPE[0],) and torch.allclose(per, torch.ones(SHAPE[0]))
    assert float(d.loss(zero_model, x0, t=t, noise=noise, reduction="sum")) == pytest.approx(4.0)
    w = torch.tensor([0.0, 1.0, 2.0, 3.0])
    per_w = d.loss(zero_model, x0, t=t, noise=noise, reduction="none", weights=w)
    torch.testing.assert_close(per_w, w)
    mask = torch.zeros(SHAPE[0], 1, SHAPE[2], 1, 1)
    mask[:, :, :1] = 1.0  # weight only the first frame
    per_m = d.loss(zero_model, x0, t=t, noise=noise, reduction="none", weights=mask)
    torch.testing.assert_close(per_m, torch.full((SHAPE[0],), 1 / SHAPE[2]))


def test_loss_is_reproducible_under_a_seed():
    d = Diffusion()
    x0 = torch.rand(SHAPE) * 2 - 1
    model = lambda x, t, c: 0.5 * x  # noqa: E731
    a = d.loss(model, x0, generator=torch.Generator().manual_seed(7))
    b = d.loss(model, x0, generator=torch.Generator().manual_seed(7))
    c = d.loss(model, x0, generator=torch.Generator().manual_seed(8))
    assert float(a) == float(b) and float(a) != float(c)


def test_loss_bad_input():
    d = Diffusion()
    x0 = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="reduction"):
        d.loss(lambda x, t, c: x, x0, reduction="avg")
    with pytest.raises(ValueError, match="model output"):
        d.loss(lambda x, t, c: x[:, :1], x0)
    with pytest.raises(ValueError, match="x0"):
        d.loss(lambda x, t, c: x, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="weights"):
        d.loss(lambda x, t, c: x, x0, weights=torch.ones(3))


def test_unknown_objective_lists_valid_names():
    with pytest.raises(ValueError, match="objective.*eps.*flow.*v"):
        get_objective("score")
    with pytest.raises(ValueError, match="objective"):
        Diffusion(objective="x0")


def test_eps_objective_with_flow_schedule_stops_short_of_pure_noise():
    assert Diffusion("flow", "eps").t_max < 1.0
    assert Diffusion("flow", "v").t_max == 1.0
    with pytest.raises(ValueError, match="t_max"):
        Diffusion("flow", "eps", t_max=1.0)
    with pytest.raises(ValueError, match="t_min"):
        Diffusion(t_min=0.5, t_max=0.2)


def test_config_round_trip():
    d = Diffusion("linear", "eps", t_min=0.01)
    d2 = Diffusion(**d.config)
    assert d2.config == d.config
