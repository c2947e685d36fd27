"""One reverse step from time t to an earlier time s < t, for three samplers.

Every sampler sees the network only through its (x0_hat, eps_hat) prediction at time t
(see ``objectives.py``), so each works with every schedule and objective. The loop that
calls them lives in ``Diffusion.sample`` (``core.py``).

Notation: a_t, s_t = alpha(t), sigma(t); lambda = log-SNR = log(a^2 / s^2).

* DDPM (ancestral, Ho et al. 2020): draw x_s from the forward posterior q(x_s | x_t, x0_hat),

      mean = (a_t / a_s) (s_s^2 / s_t^2) x_t + a_s (1 - e^{lambda_t - lambda_s}) x0_hat
      var  = s_s^2 (1 - e^{lambda_t - lambda_s})

  (the general form of the DDPM "beta tilde" posterior; it needs only lambda_t < lambda_s).
* DDIM (Song et al. 2021): ``x_s = a_s x0_hat + sqrt(s_s^2 - c^2) eps_hat + c z`` with
  ``c = eta * sqrt(var)``. eta = 0 is deterministic (the probability-flow ODE solved with
  exponential-integrator accuracy); eta = 1 is exactly the DDPM step above.
* Euler: the probability-flow ODE ``dx/dt = a'(t) x0_hat + s'(t) eps_hat`` integrated with one
  explicit Euler step. For the flow schedule a' = -1, s' = 1, so this is the rectified-flow
  update ``x_s = x_t + (s - t) (eps_hat - x0_hat)``.

Coefficients are python floats precomputed once per grid (``make_grid``; all samples share
the same t in a sampling loop), so the steps are cheap and device / dtype agnostic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .schedules import Schedule

SAMPLERS = ("ddpm", "ddim", "euler")


def check_sampler(sampler: str, steps: int, eta: float) -> None:
    """Raise ``ValueError`` naming the bad argument (sampler, steps or eta)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler: unknown name {sampler!r}; expected one of {list(SAMPLERS)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    if not (isinstance(eta, (int, float)) and 0.0 <= float(eta) <= 1.0):
        raise ValueError(f"eta: expected a float in [0, 1], got {eta!r}")


def time_grid(steps: int, t_max: float = 1.0, t_end: float = 0.0) -> list[float]:
    """``steps + 1`` times, uniform from ``t_max`` down to ``t_end`` (python floats).

    The model is evaluated at the first ``steps`` of them; the last one (0 by default) is
    where the loop returns the final x0 prediction instead of calling the model.
    """
    return [t_max + (t_end - t_max) * i / steps for i in range(steps + 1)]


@dataclass(frozen=True)
class GridPoint:
    """Schedule values at one time of the sampling grid, as python floats."""

    t: float
    alpha: float
    sigma: float
    log_snr: float
    d_alpha: float
    d_sigma: float


def make_grid(schedule: Schedule, steps: int, t_max: float = 1.0) -> list[GridPoint]:
    """``time_grid`` with every schedule value precomputed in one vectorised float64 call.

    Evaluating the schedule once per grid instead of several times per step keeps the
    python overhead of a 1000-step loop small. Derivatives at t = 0 (infinite for VP
    schedules) are never used and are stored as 0.
    """
    times = time_grid(steps, t_max, 0.0)
    t = torch.tensor(times, dtype=torch.float64)
    alpha, sigma = schedule.alpha_sigma(t)
    lam = schedule.log_snr(t)
    inner = t > 0
    d_alpha, d_sigma = torch.zeros_like(t), torch.zeros_like(t)
    da, ds = schedule.d_alpha_sigma(t[inner])
    d_alpha[inner], d_sigma[inner] = da, ds
    return [GridPoint(*map(float, row)) for row in
            zip(times, alpha.tolist(), sigma.tolist(), lam.tolist(), d_alpha.tolist(),
                d_sigma.tolist())]


def posterior_fraction(p_t: GridPoint, p_s: GridPoint) -> float:
    """``1 - exp(lambda_t - lambda_s)`` = sigma_{t|s}^2 / sigma_t^2, in [0, 1].

    Computed from log-SNRs with expm1 because the direct ``1 - a_t^2 s_s^2 / (a_s^2 s_t^2)``
    cancels catastrophically when t and s are close.
    """
    if p_t.log_snr == -math.inf:  # pure noise at t (alpha_t = 0): x_t says nothing about x_s
        return 1.0
    return min(max(-math.expm1(p_t.log_snr - p_s.log_snr), 0.0), 1.0)


def ddpm_step(x_t: torch.Tensor, x0: torch.Tensor, p_t: GridPoint, p_s: GridPoint,
              noise: torch.Tensor | None) -> torch.Tensor:
    """Ancestral step: sample ``q(x_s | x_t, x0_hat)``. Shapes: all ``(b, c, t, h, w)``.

    ``noise`` is N(0, I) shaped like x_t (None gives the posterior mean).
    """
    frac = posterior_fraction(p_t, p_s)
    mean = (p_t.alpha / p_s.alpha) * (p_s.sigma**2 / p_t.sigma**2) * x_t + p_s.alpha * frac * x0
    if noise is None:
        return mean
    return mean + math.sqrt(p_s.sigma**2 * frac) * noise


def ddim_step(x0: torch.Tensor, eps: torch.Tensor, p_t: GridPoint, p_s: GridPoint,
              eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """DDIM step ``x_s = a_s x0 + sqrt(s_s^2 - c^2) eps + c z``, ``c = eta sqrt(var_posterior)``."""
    c = eta * math.sqrt(p_s.sigma**2 * posterior_fraction(p_t, p_s)) if eta > 0 else 0.0
    x_s = p_s.alpha * x0 + math.sqrt(max(p_s.sigma**2 - c**2, 0.0)) * eps
    if c > 0:
        if noise is None:
            raise ValueError("noise: ddim_step with eta > 0 needs a noise tensor")
        x_s = x_s + c * noise
    return x_s


def euler_step(x_t: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, p_t: GridPoint,
               p_s: GridPoint) -> torch.Tensor:
    """Euler step of ``dx/dt = a'(t) x0 + s'(t) eps`` from t to s (s < t, so dt < 0)."""
    velocity = p_t.d_alpha * x0 + p_t.d_sigma * eps
    return x_t + (p_s.t - p_t.t) * velocity
