"""Section 11.2.3: how information flows along time inside a video network.

Three measurements, each for any model of this package (UNet3D, VideoDiT, UNet2D /
VideoFromImage — anything with ``forward_features(x, t, cond, grad)``) or a plain layer
``(b, c, t, h, w) -> (b, c, t, h, w)`` (call with ``t=None``):

* **Effective temporal receptive field** (:func:`temporal_receptive_field`): the gradient
  of an output frame with respect to every input frame. ``profile[j] = sum |dL/dx_j|``
  (over batch, channels and pixels), normalised to sum 1, with ``L = <y_frame, g>`` for a
  fixed random direction ``g`` (a random direction avoids the cancellations of a plain sum).
  A layer's *theoretical* receptive field is where the profile is non-zero; the
  *effective* one (:func:`effective_span`) is how many frames carry most of the gradient.
* **Feature propagation** (:func:`feature_propagation`): perturb input frame ``k`` and
  measure, at every layer, how much each frame's features change. A temporal layer spreads
  the change to neighbouring frames; a per-frame layer cannot.
* **Bottleneck** (:func:`find_bottleneck`): the layer at which a per-layer temporal score
  (the leak of a perturbation to other frames, or the effective span) collapses relative
  to the best earlier layer: information about other frames is lost there.

Normalisation counts too: the 3-D U-Net's GroupNorm takes its statistics over the whole
clip, so even a U-Net without temporal layers has a faint receptive field over every frame
(the frame-by-frame ``UNet2D`` has none: its norm is per frame).

Layers with fewer frames (temporal downsampling) are handled by mapping the frame index:
frame ``f`` of a ``T``-frame input is frame ``f * t_l // T`` of a ``t_l``-frame feature.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["model_features", "temporal_receptive_field", "layer_receptive_fields",
           "receptive_field_matrix", "effective_span", "influence_range",
           "feature_propagation", "propagation_leak", "find_bottleneck",
           "temporal_bottleneck", "plot_layer_profiles"]


def _as_time(t, b: int, device):
    if t is None:
        return None
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    return t.reshape(1).expand(b) if t.numel() == 1 else t


def model_features(model: nn.Module, x: torch.Tensor, t=0.5, cond: dict | None = None,
                   grad: bool = False) -> list[tuple[str, torch.Tensor]]:
    """Per-layer video features ``[(name, (b, c_l, t_l, h_l, w_l)), ...]`` plus ``"output"``.

    Models with ``forward_features`` give every layer; anything else gives only its
    output. ``t=None``: call ``model(x)`` (a plain layer), else ``model(x, t, cond)``.
    """
    if x.ndim != 5:
        raise ValueError(f"x: expected a video (b, c, t, h, w), got {tuple(x.shape)}")
    tt = _as_time(t, x.shape[0], x.device)
    with torch.set_grad_enabled(grad):
        feats = []
        if hasattr(model, "forward_features") and tt is not None:
            feats = list(model.forward_features(x, tt, cond, grad=grad))
        out = model(x) if tt is None else model(x, tt, cond)
        feats.append(("output", out))
    return feats


def _frame_of(frame: int, t_in: int, t_layer: int) -> int:
    return min(t_layer - 1, frame * t_layer // t_in)


def _direction(shape, seed: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(device)


def temporal_receptive_field(model: nn.Module, x: torch.Tensor, frame: int, t=0.5,
                             cond: dict | None = None, layer: str = "output",
                             seed: int = 0, normalize: bool = True) -> torch.Tensor:
    """Gradient of one output frame w.r.t. every input frame: ``(t_in,)``.

    model, x ``(b, c, t, h, w)``, t, cond: as :func:`model_features`. frame: the output
    frame (of the input clip's frame count; mapped for downsampled layers). layer: a name
    from :func:`model_features` (default the model output). Returns
    ``profile[j] = sum |d <y_frame, g> / d x[:, :, j]|`` for a seeded random ``g``,
    divided by its sum when ``normalize`` (an all-zero gradient stays zero).
    """
    return layer_receptive_fields(model, x, frame, t, cond, layers=[layer], seed=seed,
                                  normalize=normalize)[layer]


def layer_receptive_fields(model: nn.Module, x: torch.Tensor, frame: int, t=0.5,
                           cond: dict | None = None, layers: list[str] | None = None,
                           seed: int = 0, normalize: bool = True) -> dict[str, torch.Tensor]:
    """:func:`temporal_receptive_field` of every layer (or the named ``layers``).

    Returns ``{name: (t_in,)}`` in network order. One forward, one backward per layer.
    """
    t_in = x.shape[2]
    if not 0 <= frame < t_in:
        raise ValueError(f"frame={frame} outside the clip (0..{t_in - 1})")
    was_training = model.training
    model.eval()
    try:
        xg = x.detach().clone().requires_grad_(True)
        feats = model_features(model, xg, t, cond, grad=True)
        names = [n for n, _ in feats]
        wanted = names if layers is None else list(layers)
        missing = [n for n in wanted if n not in names]
        if missing:
            raise ValueError(f"layers {missing} not found; available: {names}")
        out = {}
        for i, (name, f) in enumerate(feats):
            if name not in wanted:
                continue
            fl = _frame_of(frame, t_in, f.shape[2])
            target = f[:, :, fl]
            g = _direction(target.shape, seed + i, target.device)
            grad, = torch.autograd.grad((target * g).sum(), xg, retain_graph=True,
                                        allow_unused=True)
            prof = torch.zeros(t_in) if grad is None else \
                grad.abs().sum(dim=(0, 1, 3, 4)).detach().float().cpu()
            if normalize and prof.sum() > 0:
                prof = prof / prof.sum()
            out[name] = prof
    finally:
        model.train(was_training)
    return out


def receptive_field_matrix(model: nn.Module, x: torch.Tensor, t=None, cond: dict | None = None,
                           layer: str = "output", seed: int = 0) -> torch.Tensor:
    """:func:`temporal_receptive_field` of every output frame: ``(t_in, t_in)``.

    Row ``i`` is the normalised gradient profile of output frame ``i`` over the input
    frames (each row sums to 1 unless it is all zero). ``t=None`` for a plain layer
    ``(b, c, t, h, w) -> (b, c, t, h, w)``; a diffusion model takes its noise level ``t``.
    A convolution gives a band, a causal recurrence a lower triangle, attention a full
    matrix. One forward and one backward per frame.
    """
    return torch.stack([temporal_receptive_field(model, x, i, t, cond, layer=layer, seed=seed)
                        for i in range(x.shape[2])])


def effective_span(profile: torch.Tensor, mass: float = 0.9) -> int:
    """Fewest frames that together carry ``mass`` of a (non-negative) profile ``(t,)``.

    0 for an all-zero profile. E.g. ``[0.05, 0.9, 0.05]`` -> 1 at mass 0.9, 2 at 0.95, 3 at 0.97.
    """
    if not 0 < mass <= 1:
        raise ValueError(f"mass: expected a fraction in (0, 1], got {mass}")
    p = profile.float().clamp_min(0)
    total = float(p.sum())
    if total <= 0:
        return 0
    cum = torch.cumsum(p.sort(descending=True).values / total, 0)
    return int((cum < mass - 1e-6).sum()) + 1


def influence_range(profile: torch.Tensor, rel_threshold: float = 1e-3) -> tuple[int, int] | None:
    """``(first, last)`` frame whose value exceeds ``rel_threshold * max``; None if all 0.

    The theoretical receptive field of an output frame: every frame that can change it.
    """
    p = profile.float()
    if float(p.max()) <= 0:
        return None
    idx = torch.nonzero(p > rel_threshold * p.max()).flatten()
    return int(idx.min()), int(idx.max())


@torch.no_grad()
def feature_propagation(model: nn.Module, x: torch.Tensor, frame: int, t=0.5,
                        cond: dict | None = None, eps: float = 0.5, seed: int = 0
                        ) -> dict[str, torch.Tensor]:
    """Perturb input frame ``frame`` and measure each layer's change per frame.

    ``x' = x`` except ``x'[:, :, frame] += eps * n`` (seeded Gaussian ``n``). For every
    layer ``f``: ``change[j] = ||f(x')_j - f(x)_j|| / rms_j ||f(x)_j||`` where ``_j``
    is frame ``j`` (norm over batch, channels, pixels) and the denominator is the mean
    per-frame norm of the layer (so layers of different scale compare). Returns
    ``{name: (t_l,)}`` in network order.
    """
    t_in = x.shape[2]
    if not 0 <= frame < t_in:
        raise ValueError(f"frame={frame} outside the clip (0..{t_in - 1})")
    was_training = model.training
    model.eval()
    try:
        noise = _direction(x[:, :, frame].shape, seed, x.device).to(x.dtype)
        x2 = x.clone()
        x2[:, :, frame] += eps * noise
        a = model_features(model, x, t, cond)
        b = model_features(model, x2, t, cond)
    finally:
        model.train(was_training)
    out = {}
    for (name, fa), (_, fb) in zip(a, b):
        per_frame = (fb - fa).float().pow(2).sum(dim=(0, 1, 3, 4)).sqrt()
        scale = fa.float().pow(2).sum(dim=(0, 1, 3, 4)).sqrt().mean()
        out[name] = (per_frame / scale.clamp_min(1e-12)).cpu()
    return out


def propagation_leak(change: torch.Tensor, frame: int, t_in: int | None = None) -> float:
    """How much of a perturbation at ``frame`` reached the *other* frames of a layer.

    ``mean_{j != k} change[j] / change[k]`` with ``k`` the perturbed frame (mapped when
    the layer has ``t_l != t_in`` frames). 0: nothing left the frame (a per-frame layer);
    1: the other frames changed as much as the perturbed one. 0 when ``change[k] == 0``.
    """
    t_l = change.shape[0]
    k = _frame_of(frame, t_in or t_l, t_l)
    if t_l < 2 or float(change[k]) <= 0:
        return 0.0
    others = torch.cat([change[:k], change[k + 1:]])
    return float(others.mean() / change[k])


def find_bottleneck(scores, drop: float = 0.5) -> dict:
    """The layer where a per-layer score collapses relative to the best earlier layer.

    scores: ``{name: score}`` (in network order) or a list of ``(name, score)``; higher
    = more temporal information (e.g. :func:`propagation_leak` or an effective span).
    For each layer ``i >= 1``: ``ratio_i = score_i / max(score_0..score_{i-1})``; the
    bottleneck is the layer with the smallest ratio (the first one on ties).

    Returns ``{"layer", "index", "ratio", "collapsed"}`` with ``collapsed = ratio < drop``
    (``layer`` None and ratio 1.0 when there are fewer than 2 layers or no earlier layer
    has a positive score).
    """
    items = list(scores.items()) if isinstance(scores, dict) else list(scores)
    best, result = None, {"layer": None, "index": None, "ratio": 1.0, "collapsed": False}
    running = None
    for i, (name, s) in enumerate(items):
        s = float(s)
        if running is not None and running > 0:
            ratio = s / running
            if best is None or ratio < best:
                best = ratio
                result = {"layer": name, "index": i, "ratio": ratio, "collapsed": ratio < drop}
        running = s if running is None else max(running, s)
    return result


def temporal_bottleneck(model: nn.Module, x: torch.Tensor, frame: int | None = None, t=0.5,
                        cond: dict | None = None, eps: float = 0.5, drop: float = 0.5,
                        seed: int = 0) -> dict:
    """Feature propagation + leak per layer + :func:`find_bottleneck`, in one call.

    ``frame`` defaults to the middle frame. Returns ``{"change": {name: (t_l,)},
    "leak": {name: float}, "bottleneck": find_bottleneck(leak)}``.
    """
    t_in = x.shape[2]
    frame = t_in // 2 if frame is None else frame
    change = feature_propagation(model, x, frame, t, cond, eps, seed)
    leak = {n: propagation_leak(c, frame, t_in) for n, c in change.items()}
    return {"change": change, "leak": leak, "bottleneck": find_bottleneck(leak, drop)}


def plot_layer_profiles(profiles: dict[str, torch.Tensor], ax=None, title: str | None = None,
                        frame: int | None = None):
    """Heat map: one row per layer, one column per frame (profiles padded to the longest)."""
    import matplotlib.pyplot as plt

    if not profiles:
        raise ValueError("plot_layer_profiles: no profiles")
    names = list(profiles)
    t = max(p.shape[0] for p in profiles.values())
    grid = torch.zeros(len(names), t)
    for i, n in enumerate(names):
        p = profiles[n].float()
        grid[i, : p.shape[0]] = p / p.max().clamp_min(1e-12)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.45 * t + 2.5, 0.28 * len(names) + 1.2))
    ax.imshow(grid.numpy(), aspect="auto", cmap="magma", vmin=0, vmax=1)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("frame")
    if frame is not None:
        ax.axvline(frame, color="cyan", lw=0.8, ls="--")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
