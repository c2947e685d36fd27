"""``Diffusion``: a schedule + an objective, with the training loss and the sampling loop.

    diffusion = Diffusion(schedule="cosine", objective="v")
    loss = diffusion.loss(model, x0, cond, generator=g)          # training step
    video = diffusion.sample(model, (4, 3, 16, 64, 64), cond,      # generation
                             sampler="ddim", steps=50, guidance=3.0)

The model is any callable ``model(x_t, t, cond) -> prediction`` with x_t ``(b, c, t, h, w)``
(or ``(b, c, h, w)`` for an image model), t ``(b,)`` float in [0, 1] and the prediction in
the objective's space (eps, v or flow velocity), same shape as x_t.
"""

from __future__ import annotations

import inspect

import torch

from viddiff_mini.utils import tqdm

from .guidance import cfg_predict
from .objectives import get_objective
from .samplers import check_sampler, ddim_step, ddpm_step, euler_step, make_grid
from .schedules import get_schedule

Tensor = torch.Tensor


def _expand(coef: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-sample coefficient (b,) to broadcast against x: (b, 1, 1, 1, 1)."""
    return coef.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)


def _randn(shape, generator: torch.Generator | None, device, dtype) -> Tensor:
    """N(0, I) drawn on the generator's device (so a CPU generator works for CUDA samples)."""
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)


def _rand(n: int, generator: torch.Generator | None, device) -> Tensor:
    gen_device = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=gen_device).to(device)


def _model_device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for p in model.parameters():
            return p.device
    return torch.device("cpu")


def _check_x(x, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (b, c, t, h, w), got {type(x).__name__}")
    if x.ndim not in (4, 5) or not x.is_floating_point():
        raise ValueError(f"{name}: expected a float tensor (b, c, t, h, w) (or (b, c, h, w) for "
                         f"images), got shape {tuple(x.shape)} dtype {x.dtype}")
    return x


class Diffusion:
    """Gaussian diffusion in continuous time: ``x_t = alpha(t) x0 + sigma(t) eps``.

    Args:
        schedule: ``"cosine"`` | ``"linear"`` | ``"flow"`` or a ``Schedule``.
        objective: ``"eps"`` | ``"v"`` | ``"flow"`` or an ``Objective`` (what the model predicts).
        t_min: smallest training time (default 1e-3 = the first DDPM step; below it the
            sample is essentially clean and the loss teaches nothing).
        t_max: largest training time and the start of sampling. Default 1.0, except
            eps-prediction on a schedule with alpha(1) = 0 (flow), where x0 = (x_t - sigma eps)
            / alpha is undefined at t = 1: there the default is 0.999.
    """

    def __init__(self, schedule="cosine", objective="v", t_min: float = 1e-3,
                 t_max: float | None = None):
        self.schedule = get_schedule(schedule)
        self.objective = get_objective(objective)
        alpha_end = float(self.schedule.alpha_sigma(1.0)[0])
        if t_max is None:
            t_max = 0.999 if (self.objective.name == "eps" and alpha_end == 0.0) else 1.0
        if not 0.0 <= t_min < t_max <= 1.0:
            raise ValueError(f"t_min, t_max: expected 0 <= t_min < t_max <= 1, got {t_min}, {t_max}")
        if self.objective.name == "eps" and float(self.schedule.alpha_sigma(t_max)[0]) == 0.0:
            raise ValueError(f"t_max: eps-prediction needs alpha(t_max) > 0 to recover x0, but "
                             f"alpha({t_max}) = 0 for the {self.schedule.name!r} schedule; use "
                             f"t_max < 1 or objective='v'/'flow'")
        self.t_min, self.t_max = float(t_min), float(t_max)

    @property
    def config(self) -> dict:
        """Constructor arguments as plain values: ``Diffusion(**d.config)`` rebuilds it."""
        return {"schedule": self.schedule.name, "objective": self.objective.name,
                "t_min": self.t_min, "t_max": self.t_max}

    def __repr__(self) -> str:
        return (f"Diffusion(schedule={self.schedule!r}, objective={self.objective.name!r}, "
                f"t_min={self.t_min}, t_max={self.t_max})")

    # ------------------------------------------------------------------ forward process
    def alpha_sigma(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """alpha(t), sigma(t) for per-sample times t (b,), shaped (b, 1, 1, 1, 1) like x."""
        alpha, sigma = self.schedule.alpha_sigma(t)
        return _expand(alpha, x), _expand(sigma, x)

    def q_sample(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """``x_t = alpha(t) x0 + sigma(t) eps``; x0, eps (b, c, t, h, w), t (b,) -> (b, c, t, h, w)."""
        alpha, sigma = self.alpha_sigma(self._times(t, x0), x0)
        return alpha * x0 + sigma * eps

    def sample_t(self, b: int, generator: torch.Generator | None = None, device="cpu") -> Tensor:
        """Training times ``t ~ U[t_min, t_max]``, shape (b,)."""
        return self.t_min + (self.t_max - self.t_min) * _rand(b, generator, device)

    @staticmethod
    def _times(t, x: Tensor) -> Tensor:
        """A float, 0-d or (b,) tensor -> (b,) float tensor on x's device (float32 unless
        t already is a floating tensor, whose precision is kept)."""
        if not (isinstance(t, Tensor) and t.is_floating_point()):
            t = torch.as_tensor(t, dtype=torch.float32)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t: expected a float or a tensor of shape ({x.shape[0]},), "
                             f"got shape {tuple(t.shape)}")
        return t.to(x.device)

    # ------------------------------------------------------------------ training
    def loss(self, model, x0: Tensor, cond: dict | None = None,
             generator: torch.Generator | None = None, reduction: str = "mean",
             weights: Tensor | None = None, *, t: Tensor | None = None,
             noise: Tensor | None = None) -> Tensor:
        """Denoising loss ``|| model(x_t, t, cond) - target(x0, eps) ||^2``.

        Args:
            model: ``model(x_t, t, cond)`` -> prediction shaped like x0.
            x0: clean data (b, c, t, h, w) in [-1, 1].
            cond: condition dict passed to the model unchanged (drop conditions beforehand
                with ``guidance.drop_conditions`` for classifier-free guidance).
            generator: draws t ~ U[t_min, t_max] (b,) and eps ~ N(0, I) (reproducible).
            reduction: ``"mean"`` (scalar), ``"sum"`` (scalar, sum of per-sample losses) or
                ``"none"`` (per-sample losses, shape (b,)).
            weights: optional non-negative weights, (b,) per sample or broadcastable to x0
                (e.g. a (b, 1, t, h, w) mask); multiplies the squared error.
            t, noise: fix the times (b,) / the noise (like x0) instead of drawing them.

        The per-sample loss is the mean over (c, t, h, w) of the (weighted) squared error.
        """
        _check_x(x0, "x0")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
        b = x0.shape[0]
        t = self.sample_t(b, generator, x0.device) if t is None else self._times(t, x0)
        if noise is None:
            noise = _randn(x0.shape, generator, x0.device, x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise: expected shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
        alpha, sigma = self.alpha_sigma(t, x0)
        x_t = alpha * x0 + sigma * noise
        pred = model(x_t, t, cond)
        if pred.shape != x0.shape:
            raise ValueError(f"model output: expected shape {tuple(x0.shape)} (same as x_t), got "
                             f"{tuple(pred.shape)}")
        target = self.objective.target(x0, noise, alpha, sigma)
        err = (pred.float() - target.float()) ** 2
        if weights is not None:
            weights = torch.as_tensor(weights, device=x0.device, dtype=err.dtype)
            if weights.ndim == 1:
                if weights.shape[0] != b:
                    raise ValueError(f"weights: expected shape ({b},) or broadcastable to "
                                     f"{tuple(x0.shape)}, got {tuple(weights.shape)}")
                weights = _expand(weights, err)
            err = err * weights
        per_sample = err.flatten(1).mean(dim=1)  # (b,)
        if reduction == "none":
            return per_sample
        return per_sample.sum() if reduction == "sum" else per_sample.mean()

    # ------------------------------------------------------------------ prediction
    def predict(self, model, x_t: Tensor, t, cond: dict | None = None, guidance=None) -> Tensor:
        """The raw (optionally CFG-guided) model output at time t; shape like x_t."""
        t = self._times(t, x_t)
        if guidance is None:
            pred = model(x_t, t, cond)
        else:
            pred = cfg_predict(model, x_t, t, cond, guidance)
        if pred.shape != x_t.shape:
            raise ValueError(f"model output: expected shape {tuple(x_t.shape)} (same as x_t), got "
                             f"{tuple(pred.shape)}")
        return pred

    def predict_x0_eps(self, model, x_t: Tensor, t, cond: dict | None = None,
                       guidance=None) -> tuple[Tensor, Tensor]:
        """``(x0_hat, eps_hat)`` from the model at time t (float or (b,)); each like x_t."""
        pred = self.predict(model, x_t, t, cond, guidance)
        alpha, sigma = self.alpha_sigma(self._times(t, x_t), x_t)
        return self.objective.to_x0_eps(pred, x_t, alpha, sigma)

    def predict_x0(self, model, x_t: Tensor, t, cond: dict | None = None, guidance=None) -> Tensor:
        """``x0_hat`` (b, c, t, h, w): the model's estimate of E[x0 | x_t]."""
        return self.predict_x0_eps(model, x_t, t, cond, guidance)[0]

    # ------------------------------------------------------------------ sampling
    def sample(self, model, shape, cond: dict | None = None, sampler: str = "ddim",
               steps: int = 50, eta: float = 0.0, guidance: float | dict | None = None,
               generator: torch.Generator | None = None, device=None, progress: bool = False,
               x_T: Tensor | None = None, callback=None, clip_x0: bool = True,
               x0_hook=None, grad: bool = False) -> Tensor:
        """Generate samples of ``shape`` = (b, c, t, h, w) by integrating from t_max to 0.

        Args:
            model, cond, guidance: as in ``predict`` (guidance: float or {name: scale}).
            sampler: ``"ddim"`` (eta = 0 deterministic, eta = 1 = DDPM), ``"ddpm"`` (ancestral)
                or ``"euler"`` (probability-flow ODE); see ``samplers.py``.
            steps: number of model evaluations (>= 1) on a uniform grid t_max -> 0.
            eta: DDIM stochasticity in [0, 1] (ignored by ddpm and euler).
            generator: for x_T and the per-step noise (reproducible samples).
            device: default x_T's device, else the model's parameters' device, else CPU.
            progress: show a tqdm bar.
            x_T: starting noise (shape ``shape``); default ``sigma(t_max) * N(0, I)``
                (for VP schedules sigma(1) ~= 1; the alpha(t_max) x0 term, <= 0.0064, is
                ignored, as in every DDPM/DDIM implementation).
            callback: ``callback(step, t, x_t, x0_pred)`` after each model call.
            clip_x0: clamp each x0 prediction and the result to [-1, 1]. Set False for data
                that is not in [-1, 1] (e.g. the Gaussian tests) or to see raw predictions.
            x0_hook: ``x0_hook(x0, t) -> x0`` (or ``x0_hook(x0, t, x_t)``) applied to each
                x0 prediction after clipping: inpainting / masked blending, physics guidance.
            grad: keep autograd on (default: ``torch.no_grad``). Each step starts from a
                detached ``x_t.requires_grad_()``, so a hook can differentiate through this
                step's prediction while memory stays flat over the steps.

        After clipping or a hook changes x0, eps is recomputed as (x_t - alpha x0) / sigma so
        that (x_t, x0, eps) stay consistent; the final step (to t = 0) returns x0 itself.

        Returns: (b, c, t, h, w), clamped to [-1, 1] when ``clip_x0``.
        """
        check_sampler(sampler, steps, eta)
        shape = tuple(shape)
        if x_T is not None:
            _check_x(x_T, "x_T")
            if tuple(x_T.shape) != shape:
                raise ValueError(f"x_T: expected shape {shape}, got {tuple(x_T.shape)}")
        if guidance is not None and cond is None:
            raise ValueError("guidance: classifier-free guidance needs cond, got cond=None")
        if device is None:
            device = x_T.device if x_T is not None else _model_device(model)
        device = torch.device(device)
        hook_takes_x_t = x0_hook is not None and _n_positional(x0_hook) >= 3

        grid = make_grid(self.schedule, steps, self.t_max)
        if x_T is None:
            x = grid[0].sigma * _randn(shape, generator, device, torch.float32)
        else:
            x = x_T.to(device)

        with torch.enable_grad() if grad else torch.no_grad():
            for i in tqdm(range(steps), disable=not progress, desc=f"{sampler} sampling"):
                p_t, p_s = grid[i], grid[i + 1]
                if grad:
                    x = x.detach().requires_grad_(True)
                x0, eps = self.predict_x0_eps(model, x, p_t.t, cond, guidance)
                if clip_x0 or x0_hook is not None:
                    if clip_x0:
                        x0 = x0.clamp(-1.0, 1.0)
                    if x0_hook is not None:
                        x0 = x0_hook(x0, p_t.t, x) if hook_takes_x_t else x0_hook(x0, p_t.t)
                    eps = (x - p_t.alpha * x0) / p_t.sigma
                if callback is not None:
                    callback(i, p_t.t, x, x0)
                if p_s.t <= 0.0:  # last step: alpha(0) = 1, sigma(0) = 0, so x_0 = x0_hat
                    x = x0
                elif sampler == "ddim":
                    noise = _randn(x.shape, generator, device, x.dtype) if eta > 0 else None
                    x = ddim_step(x0, eps, p_t, p_s, eta, noise)
                elif sampler == "ddpm":
                    x = ddpm_step(x, x0, p_t, p_s, _randn(x.shape, generator, device, x.dtype))
                else:
                    x = euler_step(x, x0, eps, p_t, p_s)
        return x.clamp(-1.0, 1.0) if clip_x0 else x


def _n_positional(fn) -> int:
    """Number of positional parameters of ``fn`` (a large number for ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    n = 0
    for p in params:
        if p.kind == p.VAR_POSITIONAL:
            return 99
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    return n
