"""Schedule algebra: VP identity, monotone log-SNR, endpoints, DDPM match, derivatives."""

import math

import pytest
import torch

from viddiff_mini.diffusion import SCHEDULES, get_schedule
from viddiff_mini.diffusion.schedules import CosineSchedule, LinearSchedule

T = torch.linspace(1e-4, 1.0, 2001, dtype=torch.float64)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_vp_schedules_preserve_variance(name):
    alpha, sigma = get_schedule(name).alpha_sigma(T)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(T), atol=1e-10, rtol=0)


def test_flow_schedule_is_straight_line():
    alpha, sigma = get_schedule("flow").alpha_sigma(T)
    torch.testing.assert_close(alpha, 1 - T)
    torch.testing.assert_close(sigma, T)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_log_snr_strictly_decreasing_and_consistent(name):
    schedule = get_schedule(name)
    lam = schedule.log_snr(T[:-1])  # flow: log-SNR(1) = -inf
    assert torch.all(lam[1:] < lam[:-1])
    alpha, sigma = schedule.alpha_sigma(T[:-1])
    torch.testing.assert_close(lam, torch.log(alpha**2 / sigma**2), atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_endpoints(name):
    schedule = get_schedule(name)
    a0, s0 = schedule.alpha_sigma(0.0)
    a1, s1 = schedule.alpha_sigma(1.0)
    assert float(a0) == pytest.approx(1.0, abs=1e-6) and float(s0) == pytest.approx(0.0, abs=1e-6)
    assert float(s1) == pytest.approx(1.0, abs=1e-4)
    expected_a1 = {"cosine": 1e-3, "linear": 0.0064, "flow": 0.0}[name]
    assert float(a1) == pytest.approx(expected_a1, abs=1e-4)


def test_float_input_gives_0d_tensors():
    alpha, sigma = get_schedule("cosine").alpha_sigma(0.5)
    assert alpha.ndim == 0 and sigma.ndim == 0


def test_linear_matches_discrete_ddpm():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, dim=0)            # after n = 1..1000 steps
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    alpha, _ = get_schedule("linear").alpha_sigma(t)
    assert (alpha**2 - alpha_bar).abs().max() < 1e-3
    # In float32 too (the closed form is evaluated in float64 inside).
    alpha32, _ = get_schedule("linear").alpha_sigma(t.float())
    assert alpha32.dtype == torch.float32
    assert (alpha32.double() ** 2 - alpha_bar).abs().max() < 1e-3


def test_cosine_close_to_nichol_dhariwal():
    s = 0.008
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) / math.cos(s / (1 + s) * math.pi / 2)
    alpha, _ = CosineSchedule(s=s).alpha_sigma(t)
    assert (alpha - f).abs().max() <= 1.01e-3


def test_plain_cosine_with_s_zero():
    t = torch.linspace(0, 0.99, 100, dtype=torch.float64)
    alpha, sigma = CosineSchedule(s=0.0, alpha_end=1e-6).alpha_sigma(t)
    torch.testing.assert_close(alpha, torch.cos(math.pi * t / 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(sigma, torch.sin(math.pi * t / 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_derivatives_match_finite_differences(name):
    schedule = get_schedule(name)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-6
    a_p, s_p = schedule.alpha_sigma(t + h)
    a_m, s_m = schedule.alpha_sigma(t - h)
    d_alpha, d_sigma = schedule.d_alpha_sigma(t)
    torch.testing.assert_close(d_alpha, (a_p - a_m) / (2 * h), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(d_sigma, (s_p - s_m) / (2 * h), atol=1e-5, rtol=1e-5)


def test_small_t_is_accurate_in_float32():
    # sigma must not collapse to 0 near t = 0 (catastrophic cancellation in 1 - alpha^2).
    for name in ("cosine", "linear"):
        _, sigma = get_schedule(name).alpha_sigma(torch.tensor([1e-5], dtype=torch.float32))
        _, sigma64 = get_schedule(name).alpha_sigma(torch.tensor([1e-5], dtype=torch.float64))
        assert float(sigma) == pytest.approx(float(sigma64), rel=1e-3)


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(ValueError, match="schedule.*cosine.*flow.*linear"):
        get_schedule("sigmoid")


def test_bad_schedule_parameters():
    with pytest.raises(ValueError, match="alpha_end"):
        CosineSchedule(alpha_end=0.0)
    with pytest.raises(ValueError, match="beta_start"):
        LinearSchedule(beta_start=0.1, beta_end=0.01)


def test_instance_passes_through():
    schedule = CosineSchedule(s=0.0)
    assert get_schedule(schedule) is schedule
