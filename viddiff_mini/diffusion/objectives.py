"""What the network predicts: eps, v or the flow velocity, and exact conversions.

Given ``x_t = alpha x0 + sigma eps`` the pair (x0, eps) is fixed by x_t and any one more
linear combination of them. The three objectives are three choices of that combination:

* ``eps``  -- predict the noise (DDPM):                      target = eps
* ``v``    -- velocity in the (x0, eps) circle (Salimans & Ho 2022): target = alpha eps - sigma x0
* ``flow`` -- rectified-flow velocity (Liu et al. 2022; Lipman et al. 2022): target = eps - x0

All three are affine in (x0, eps), so converting a prediction back to (x0, eps) is a 2x2
linear solve with x_t; the formulas are written out below and hold for any alpha, sigma
(VP or not). Every sampler in ``samplers.py`` goes through (x0, eps), so every
objective works with every schedule.

Design decision for ``flow`` with VP schedules: the target stays ``eps - x0``. It equals the
true velocity dx_t/dt only for the flow schedule (alpha = 1 - t, sigma = t); with cosine or
linear it is still a well-conditioned parametrisation (the solve divides by alpha + sigma >= 1)
that the samplers convert exactly, so the combination works and is tested.

Conditioning of the inverse: ``eps`` divides by alpha (bad near pure noise, where alpha -> 0,
and impossible at alpha = 0); ``v`` divides by alpha^2 + sigma^2 (= 1 for VP); ``flow`` by
alpha + sigma. That is why v and flow are the better defaults for video models.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


# --------------------------------------------------------------------------- conversions
# Shapes: x0, eps, x_t, pred are (b, c, t, h, w) (any shape works); alpha and sigma broadcast
# against them, e.g. (b, 1, 1, 1, 1) or python floats.

def x0_to_eps(x0: Tensor, x_t: Tensor, alpha, sigma) -> Tensor:
    """``eps = (x_t - alpha x0) / sigma`` (needs sigma > 0)."""
    return (x_t - alpha * x0) / sigma


def eps_to_x0(eps: Tensor, x_t: Tensor, alpha, sigma) -> Tensor:
    """``x0 = (x_t - sigma eps) / alpha`` (needs alpha > 0)."""
    return (x_t - sigma * eps) / alpha


def x0_eps_to_v(x0: Tensor, eps: Tensor, alpha, sigma) -> Tensor:
    """``v = alpha eps - sigma x0``."""
    return alpha * eps - sigma * x0


def v_to_x0_eps(v: Tensor, x_t: Tensor, alpha, sigma) -> tuple[Tensor, Tensor]:
    """Invert ``[x_t; v] = [[alpha, sigma], [-sigma, alpha]] [x0; eps]``.

    ``x0 = (alpha x_t - sigma v) / (alpha^2 + sigma^2)``,
    ``eps = (sigma x_t + alpha v) / (alpha^2 + sigma^2)`` (the denominator is 1 for VP).
    """
    norm = alpha * alpha + sigma * sigma
    return (alpha * x_t - sigma * v) / norm, (sigma * x_t + alpha * v) / norm


def x0_eps_to_flow(x0: Tensor, eps: Tensor, alpha=None, sigma=None) -> Tensor:
    """``u = eps - x0`` (alpha, sigma unused; accepted for a uniform signature)."""
    return eps - x0


def flow_to_x0_eps(u: Tensor, x_t: Tensor, alpha, sigma) -> tuple[Tensor, Tensor]:
    """Invert ``[x_t; u] = [[alpha, sigma], [-1, 1]] [x0; eps]``.

    ``x0 = (x_t - sigma u) / (alpha + sigma)``, ``eps = (x_t + alpha u) / (alpha + sigma)``.
    For rectified flow alpha + sigma = 1, so ``x0 = x_t - t u`` and ``eps = x_t + (1 - t) u``.
    """
    norm = alpha + sigma
    return (x_t - sigma * u) / norm, (x_t + alpha * u) / norm


# --------------------------------------------------------------------------- objectives
class Objective:
    """One training target. ``target`` makes it from (x0, eps); ``to_x0_eps`` inverts it."""

    name: str = "base"

    def target(self, x0: Tensor, eps: Tensor, alpha, sigma) -> Tensor:
        """The regression target, same shape as x0."""
        raise NotImplementedError

    def to_x0_eps(self, pred: Tensor, x_t: Tensor, alpha, sigma) -> tuple[Tensor, Tensor]:
        """(x0_hat, eps_hat) consistent with ``x_t = alpha x0_hat + sigma eps_hat``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EpsObjective(Objective):
    name = "eps"

    def target(self, x0, eps, alpha, sigma):
        return eps

    def to_x0_eps(self, pred, x_t, alpha, sigma):
        return eps_to_x0(pred, x_t, alpha, sigma), pred


class VObjective(Objective):
    name = "v"

    def target(self, x0, eps, alpha, sigma):
        return x0_eps_to_v(x0, eps, alpha, sigma)

    def to_x0_eps(self, pred, x_t, alpha, sigma):
        return v_to_x0_eps(pred, x_t, alpha, sigma)


class FlowObjective(Objective):
    name = "flow"

    def target(self, x0, eps, alpha, sigma):
        return x0_eps_to_flow(x0, eps)

    def to_x0_eps(self, pred, x_t, alpha, sigma):
        return flow_to_x0_eps(pred, x_t, alpha, sigma)


OBJECTIVES = {"eps": EpsObjective, "v": VObjective, "flow": FlowObjective}


def get_objective(name: str | Objective) -> Objective:
    """Build an objective by name (``"eps"``, ``"v"``, ``"flow"``); instances pass through."""
    if isinstance(name, Objective):
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"objective: unknown name {name!r}; expected one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]()
