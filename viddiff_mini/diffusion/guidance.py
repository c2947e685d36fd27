"""Classifier-free guidance (Ho & Salimans, 2022) over any set of named conditions.

Conditions travel in a dict, e.g. ``cond = {"label": (b,) long, "context": (b, n, d),
"context_mask": (b, n) bool}``. To *drop* condition ``name`` for some samples we set
``cond[name + "_keep"] = BoolTensor (b,)`` False there; the model then substitutes its
learned null embedding. Keys ending in ``_keep`` or ``_mask`` are bookkeeping, not conditions
(``context_mask`` marks real tokens of ``context``).

Training: ``drop_conditions`` drops each condition independently with probability p, so
the one network learns p(x | c) for every subset of conditions, including the empty one.

Sampling: with predictions f(.) of the network (in the objective's space; every conversion
to x0 / eps is affine in the prediction, so combining there equals combining scores):

    joint (float w):   f = f(null) + w (f(all) - f(null))
    per condition:     f = f(null) + sum_k w_k (f(only k) - f(null))      (Liu et al. 2022,
                                                                           composable diffusion)

w = 1 gives the plain conditional prediction, w = 0 the unconditional one; w > 1 trades
diversity for fidelity. In the dict form a condition that is not named gets no term, i.e. it
is dropped from every pass.
"""

from __future__ import annotations

import torch

_BOOKKEEPING = ("_keep", "_mask")


def condition_names(cond: dict | None) -> list[str]:
    """The condition keys of ``cond`` (sorted, without ``*_keep`` / ``*_mask`` keys)."""
    if not cond:
        return []
    return sorted(k for k in cond if not k.endswith(_BOOKKEEPING))


def _batch_size(cond: dict, name: str) -> int:
    value = cond[name]
    if isinstance(value, torch.Tensor) and value.ndim >= 1:
        return value.shape[0]
    if isinstance(value, (list, tuple)):
        return len(value)
    raise ValueError(f"cond[{name!r}]: expected a tensor or list with a batch dimension, "
                     f"got {type(value).__name__}")


def _device(cond: dict, name: str) -> torch.device:
    value = cond[name]
    return value.device if isinstance(value, torch.Tensor) else torch.device("cpu")


def _keep(cond: dict, name: str) -> torch.Tensor:
    """Current keep mask (b,) bool of ``name`` (all True when absent)."""
    b = _batch_size(cond, name)
    keep = cond.get(name + "_keep")
    if keep is None:
        return torch.ones(b, dtype=torch.bool, device=_device(cond, name))
    keep = torch.as_tensor(keep, dtype=torch.bool)
    if keep.shape != (b,):
        raise ValueError(f"cond[{name + '_keep'!r}]: expected shape ({b},), got {tuple(keep.shape)}")
    return keep


def drop_conditions(cond: dict | None, p: float | dict[str, float],
                    generator: torch.Generator | None = None) -> dict | None:
    """Training-time condition dropout; returns a new dict (the input is not modified).

    Args:
        cond: condition dict (see module doc); None passes through.
        p: drop probability, a float for every condition or ``{name: p}`` for some of them
           (unnamed ones are left alone).
        generator: torch.Generator for the coin flips (deterministic under a seed).

    Sets ``cond[name + "_keep"] = old_keep & (u >= p)`` with ``u ~ U[0, 1)`` of shape (b,),
    so an already-dropped condition stays dropped. Conditions are visited in sorted order so
    a seed gives the same masks whatever the dict's insertion order.
    """
    if cond is None:
        return None
    names = condition_names(cond)
    if isinstance(p, dict):
        unknown = sorted(set(p) - set(names))
        if unknown:
            raise ValueError(f"p: unknown condition(s) {unknown}; cond has {names}")
        probs = {k: float(v) for k, v in p.items()}
    elif isinstance(p, (int, float)) and not isinstance(p, bool):
        probs = {k: float(p) for k in names}
    else:
        raise TypeError(f"p: expected a float or a dict {{name: float}}, got {type(p).__name__}")
    for k, v in probs.items():
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"p: drop probability for {k!r} must be in [0, 1], got {v}")

    out = dict(cond)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    for name in sorted(probs):
        keep = _keep(cond, name)
        u = torch.rand(keep.shape[0], generator=generator, device=gen_device).to(keep.device)
        out[name + "_keep"] = keep & (u >= probs[name])
    return out


def null_conditions(cond: dict | None, names: list[str] | None = None) -> dict | None:
    """A copy of ``cond`` with ``<name>_keep`` all False for ``names`` (default: every condition)."""
    if cond is None:
        return None
    all_names = condition_names(cond)
    names = all_names if names is None else list(names)
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"names: unknown condition(s) {unknown}; cond has {all_names}")
    out = dict(cond)
    for name in names:
        out[name + "_keep"] = torch.zeros_like(_keep(cond, name))
    return out


def only_conditions(cond: dict, names: list[str]) -> dict:
    """A copy of ``cond`` where only ``names`` keep their masks; every other condition is dropped."""
    others = [k for k in condition_names(cond) if k not in set(names)]
    return null_conditions(cond, others)


def _cat_conds(conds: list[dict], b: int) -> dict:
    """Concatenate condition dicts along the batch: per-sample tensors / lists are joined.

    Values without a batch dimension of size b (a shared scalar, a config flag) must be the
    same object in all dicts and are passed through once.
    """
    out = {}
    for key in conds[0]:
        values = [c[key] for c in conds]
        v0 = values[0]
        if isinstance(v0, torch.Tensor) and v0.ndim >= 1 and v0.shape[0] == b:
            out[key] = torch.cat(values, dim=0)
        elif isinstance(v0, (list, tuple)) and len(v0) == b:
            out[key] = [item for v in values for item in v]
        else:
            out[key] = v0
    return out


def _forward_many(model, x_t: torch.Tensor, t: torch.Tensor, conds: list[dict],
                  batched: bool) -> list[torch.Tensor]:
    """Run ``model`` once per condition dict; one concatenated forward when ``batched``."""
    if not batched or len(conds) == 1:
        return [model(x_t, t, c) for c in conds]
    n, b = len(conds), x_t.shape[0]
    x_all = torch.cat([x_t] * n, dim=0)                  # (n b, c, t, h, w)
    t_all = torch.cat([t] * n, dim=0)                    # (n b,)
    pred = model(x_all, t_all, _cat_conds(conds, b))
    return list(pred.chunk(n, dim=0))


def cfg_predict(model, x_t: torch.Tensor, t: torch.Tensor, cond: dict,
                scales: float | dict[str, float], batched: bool = True) -> torch.Tensor:
    """Guided prediction (in the model's objective space), same shape as ``x_t``.

    Args:
        model: ``model(x_t, t, cond) -> (b, c, t, h, w)``.
        x_t: ``(b, c, t, h, w)`` noisy input; t: ``(b,)`` times.
        cond: condition dict (must not be None).
        scales: float w (joint guidance: null vs. all conditions) or ``{name: w_name}``
            (compositional guidance, see module doc).
        batched: run all passes as one forward of batch ``n * b`` (faster on GPU; set False
            to save memory).

    Edge cases: w = 1 returns ``model(x_t, t, cond)`` with one pass; w = 0 returns the
    unconditional prediction with one pass; a dict entry with scale 0 costs no pass.
    """
    if cond is None:
        raise ValueError("cond: classifier-free guidance needs a condition dict, got None")
    names = condition_names(cond)
    if not names:
        raise ValueError("cond: classifier-free guidance needs at least one condition key")
    # Give every condition an explicit keep mask so all passes share the same keys
    # (needed to concatenate them into one batch).
    cond = {**cond, **{k + "_keep": _keep(cond, k) for k in names}}
    uncond = null_conditions(cond)

    if isinstance(scales, dict):
        unknown = sorted(set(scales) - set(names))
        if unknown:
            raise ValueError(f"scales: unknown condition(s) {unknown}; cond has {names}")
        terms = [(k, float(w)) for k, w in sorted(scales.items()) if float(w) != 0.0]
        if not terms:
            return model(x_t, t, uncond)
        conds = [uncond] + [only_conditions(cond, [k]) for k, _ in terms]
        preds = _forward_many(model, x_t, t, conds, batched)
        out = preds[0]
        for (_, w), pred_k in zip(terms, preds[1:]):
            out = out + w * (pred_k - preds[0])
        return out

    if isinstance(scales, bool) or not isinstance(scales, (int, float)):
        raise TypeError(f"scales: expected a float or dict {{name: float}}, "
                        f"got {type(scales).__name__}")
    w = float(scales)
    if w == 1.0:
        return model(x_t, t, cond)
    if w == 0.0:
        return model(x_t, t, uncond)
    pred_uncond, pred_cond = _forward_many(model, x_t, t, [uncond, cond], batched)
    return pred_uncond + w * (pred_cond - pred_uncond)
