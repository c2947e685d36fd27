"""Noise schedules in continuous time.

Every schedule describes the forward (noising) process

    x_t = alpha(t) * x0 + sigma(t) * eps,      eps ~ N(0, I),   t in [0, 1]

with t = 0 clean data and t = 1 (almost) pure noise. Working in continuous time lets one
trained model be sampled with any number of steps: a sampler just picks a time grid.

Three schedules:

* ``cosine`` -- Nichol & Dhariwal (2021) ``alpha_bar = cos^2(phi)`` with offset s = 0.008.
  Variance preserving (VP): alpha^2 + sigma^2 = 1.
* ``linear`` -- the DDPM (Ho et al., 2020) betas ``linspace(1e-4, 0.02, 1000)`` written as a
  continuous-time integral, so ``alpha(n / 1000)^2`` equals the discrete ``alpha_bar_n``. VP.
* ``flow`` -- rectified flow / flow matching: alpha = 1 - t, sigma = t (straight lines
  between data and noise). Not VP: the variance dips in the middle.

The signal-to-noise ratio SNR(t) = alpha^2 / sigma^2 is what really defines a schedule (two
schedules with the same SNR curve are the same up to a rescaling of x); ``log_snr`` is
strictly decreasing in t for all three.

Endpoints. At t = 0, sigma = 0 and log-SNR = +inf; at t = 1 the flow schedule has alpha = 0
(log-SNR = -inf). Nothing here is evaluated at those points during training or sampling:
``Diffusion`` draws training times from [t_min, t_max] (default t_min = 1e-3, the first DDPM
step) and the samplers never call the model at t = 0 (the last step returns the x0 prediction).
"""

from __future__ import annotations

import math

import torch


def _as_tensor(t) -> torch.Tensor:
    """Python floats become 0-d float32 tensors; tensors pass through (floating point)."""
    if not isinstance(t, torch.Tensor):
        return torch.tensor(float(t), dtype=torch.float32)
    return t if t.is_floating_point() else t.float()


class Schedule:
    """Base class. Subclasses implement ``alpha_sigma`` and ``d_alpha_sigma``.

    All methods take ``t`` as a float or a tensor of any shape and return tensors of the
    same shape as ``t`` (callers reshape to broadcast against ``(b, c, t, h, w)``).
    """

    name: str = "base"
    variance_preserving: bool = False

    def alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))``, each shaped like ``t``."""
        raise NotImplementedError

    def d_alpha_sigma(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Time derivatives ``(d alpha / dt, d sigma / dt)``, each shaped like ``t``.

        Used by the Euler sampler: the probability-flow ODE in this parametrisation is
        ``dx/dt = alpha'(t) x0_hat + sigma'(t) eps_hat``.
        """
        raise NotImplementedError

    def log_snr(self, t) -> torch.Tensor:
        """``log(alpha^2 / sigma^2)``, strictly decreasing in t (+inf at t = 0)."""
        alpha, sigma = self.alpha_sigma(t)
        return 2.0 * (torch.log(alpha) - torch.log(sigma))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class CosineSchedule(Schedule):
    """Nichol & Dhariwal cosine schedule, made finite at t = 1.

        phi(t)   = phi0 + t * (phi1 - phi0),         phi0 = s / (1 + s) * pi / 2
        alpha(t) = cos(phi(t)) / cos(phi0),           sigma(t) = sqrt(1 - alpha(t)^2)

    The original uses phi1 = pi / 2, where alpha(1) = 0 exactly; an eps-predicting model then
    cannot recover x0 = (x_t - sigma eps) / alpha at t = 1. We stop the angle just short of
    pi / 2 so that ``alpha(1) = alpha_end`` (default 1e-3, log-SNR(1) = -13.8, like the
    discrete schedule with its beta clipping). alpha(t) differs from the paper's by at most
    alpha_end everywhere (it is 0 vs 1e-3 at t = 1). ``s = 0`` gives the plain
    ``alpha = cos(pi t / 2), sigma = sin(pi t / 2)`` form (with alpha(1) = alpha_end as well).
    """

    name = "cosine"
    variance_preserving = True

    def __init__(self, s: float = 0.008, alpha_end: float = 1e-3):
        if not 0.0 <= s < 1.0:
            raise ValueError(f"s: expected 0 <= s < 1, got {s}")
        if not 0.0 < alpha_end < 1.0:
            raise ValueError(f"alpha_end: expected 0 < alpha_end < 1, got {alpha_end}")
        self.s, self.alpha_end = s, alpha_end
        self.phi0 = s / (1.0 + s) * math.pi / 2
        self.cos0 = math.cos(self.phi0)
        self.phi1 = math.acos(alpha_end * self.cos0)  # solves cos(phi1) / cos(phi0) = alpha_end

    def _phi(self, t: torch.Tensor) -> torch.Tensor:
        return self.phi0 + t * (self.phi1 - self.phi0)

    def alpha_sigma(self, t):
        t = _as_tensor(t)
        phi = self._phi(t)
        alpha = torch.cos(phi) / self.cos0
        # 1 - cos^2(phi)/cos^2(phi0) = sin(phi - phi0) sin(phi + phi0) / cos^2(phi0):
        # no cancellation near t = 0, where 1 - alpha^2 would lose all digits in float32.
        sigma2 = torch.sin(phi - self.phi0) * torch.sin(phi + self.phi0) / self.cos0**2
        return alpha, sigma2.clamp_min(0.0).sqrt()

    def d_alpha_sigma(self, t):
        t = _as_tensor(t)
        alpha, sigma = self.alpha_sigma(t)
        d_alpha = -torch.sin(self._phi(t)) * (self.phi1 - self.phi0) / self.cos0
        # VP: alpha^2 + sigma^2 = 1  =>  alpha alpha' + sigma sigma' = 0.
        return d_alpha, -alpha * d_alpha / sigma

    def __repr__(self) -> str:
        return f"CosineSchedule(s={self.s}, alpha_end={self.alpha_end})"


class LinearSchedule(Schedule):
    """DDPM's linear betas in continuous time.

    Discrete DDPM: ``beta_i = linspace(beta_start, beta_end, N)[i - 1]`` and
    ``alpha_bar_n = prod_{i <= n} (1 - beta_i)``. We let beta(u) be the straight line through
    those values placed at the step midpoints u = (i - 1/2) / N, and integrate:

        log alpha_bar(t) = N * integral_0^t log(1 - beta(u)) du        (closed form below)
        alpha(t) = sqrt(alpha_bar(t)),   sigma(t) = sqrt(1 - alpha_bar(t))

    The midpoint rule makes ``alpha_bar(n / N)`` match the discrete product to ~1e-8 for
    every n (the tests check 1e-3). alpha(1) = 0.0064 (log-SNR -10.1): finite, as in DDPM.
    The closed form subtracts nearly equal numbers, so it is evaluated in float64.
    """

    name = "linear"
    variance_preserving = True

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = 1000):
        if not 0.0 < beta_start < beta_end < 1.0:
            raise ValueError(f"beta_start, beta_end: expected 0 < beta_start < beta_end < 1, "
                             f"got {beta_start}, {beta_end}")
        if num_steps < 2:
            raise ValueError(f"num_steps: expected >= 2, got {num_steps}")
        self.beta_start, self.beta_end, self.num_steps = beta_start, beta_end, num_steps
        n = num_steps
        step = (beta_end - beta_start) / (n - 1)
        # beta(u) = b0 + (b1 - b0) u, with beta((i - 1/2) / N) = beta_i.
        self.b0 = beta_start - 0.5 * step
        self.b1 = beta_start + (n - 0.5) * step

    def beta(self, t) -> torch.Tensor:
        """Continuous beta(t) (per discrete step), shaped like ``t``."""
        return self.b0 + (self.b1 - self.b0) * _as_tensor(t)

    def log_alpha_bar(self, t) -> torch.Tensor:
        """``log alpha_bar(t) = N * int_0^t log(1 - beta(u)) du``, shaped like ``t``."""
        t = _as_tensor(t)
        t64 = t.double()
        slope = self.b1 - self.b0

        def antiderivative(w):  # d/dw (w log w - w) = log w, and w = 1 - beta(u)
            return w * torch.log(w) - w

        w0 = torch.full_like(t64, 1.0 - self.b0)
        wt = 1.0 - self.b0 - slope * t64
        out = self.num_steps / slope * (antiderivative(w0) - antiderivative(wt))
        return out.to(t.dtype)

    def alpha_sigma(self, t):
        t = _as_tensor(t)
        la = self.log_alpha_bar(t)
        return torch.exp(0.5 * la), torch.sqrt(-torch.expm1(la))  # expm1: exact near t = 0

    def d_alpha_sigma(self, t):
        t = _as_tensor(t)
        alpha, sigma = self.alpha_sigma(t)
        d_log_alpha_bar = self.num_steps * torch.log1p(-self.beta(t))
        d_alpha = 0.5 * alpha * d_log_alpha_bar
        return d_alpha, -alpha * d_alpha / sigma

    def log_snr(self, t):
        t = _as_tensor(t)
        la = self.log_alpha_bar(t)
        return la - torch.log(-torch.expm1(la))

    def __repr__(self) -> str:
        return (f"LinearSchedule(beta_start={self.beta_start}, beta_end={self.beta_end}, "
                f"num_steps={self.num_steps})")


class FlowSchedule(Schedule):
    """Rectified flow: ``alpha = 1 - t``, ``sigma = t``; x_t moves on a straight line.

    dx_t/dt = eps - x0 is constant along each line, which is why few Euler steps work well.
    alpha(1) = 0 exactly: x_1 is pure noise (eps-prediction must stop at t_max < 1).
    """

    name = "flow"
    variance_preserving = False

    def alpha_sigma(self, t):
        t = _as_tensor(t)
        return 1.0 - t, t.clone()

    def d_alpha_sigma(self, t):
        t = _as_tensor(t)
        return torch.full_like(t, -1.0), torch.ones_like(t)

    def log_snr(self, t):
        t = _as_tensor(t)
        return 2.0 * (torch.log1p(-t) - torch.log(t))


SCHEDULES = {"cosine": CosineSchedule, "linear": LinearSchedule, "flow": FlowSchedule}


def get_schedule(name: str | Schedule, **kwargs) -> Schedule:
    """Build a schedule by name (``"cosine"``, ``"linear"``, ``"flow"``); instances pass through."""
    if isinstance(name, Schedule):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"schedule: unknown name {name!r}; expected one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](**kwargs)
