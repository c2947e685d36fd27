"""Section 11.2.2: look inside space-time attention — capture maps, summarise, plot.

Attention modules of this package (``nn/attention.py`` blocks, the DiT's ``SelfAttention``,
``CrossAttention``) run ``F.scaled_dot_product_attention`` on the hot path. While
:func:`capture_attention_maps` is active they take the readable reference path instead
(``softmax(Q K^T / sqrt(d))``, tested equal to SDPA) and every call is recorded as an
:class:`AttentionMap`: the weights plus the token grid ``(t, h, w)`` they live on.

What a map says about time and space (all maps are rows = queries, columns = keys):

* :func:`temporal_marginal`: from a joint "(t h w)" map to a ``(t, t)`` frame-to-frame
  matrix: how much of a query's attention lands on each frame;
* :func:`spatial_marginal`: the ``(hw, hw)`` position-to-position matrix, summed over frames;
* summaries (:func:`summarize_map`): row entropy (how spread out), the fraction of attention
  on the query's own frame, the expected frame distance and its ratio to uniform attention
  (< 1: attention prefers nearby frames — temporal locality), the offset profile
  (attention mass as a function of ``key frame - query frame``), spatial distance.

>>> maps = collect_attention_maps(model, x, t=0.5)          # list of AttentionMap
>>> rows = summarize_attention(maps)                         # one dict per call
>>> plot_temporal_maps(maps)                                 # a (t, t) image per layer
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from ..nn.attention import return_attention_maps

__all__ = ["AttentionMap", "capture_attention_maps", "collect_attention_maps",
           "temporal_marginal", "spatial_marginal", "row_entropy", "expected_distance",
           "offset_profile", "temporal_locality", "summarize_map", "summarize_attention",
           "query_volume", "token_dependency", "cross_attention_per_frame",
           "plot_attention_map", "plot_temporal_maps", "plot_offset_profiles",
           "plot_attention_summary"]

JOINT_KINDS = ("full", "sparse", "joint")  # maps over all "(t h w)" tokens of a clip


@dataclass
class AttentionMap:
    """One recorded attention call.

    name: module name in the model. kind: ``spatial | temporal | full | sparse | window |
    joint | cross`` (DiT blocks: ``spatial | temporal | joint``). weights: ``(groups, heads,
    Lq, Lk)``, rows sum to 1. grid: ``(t, h, w)`` token grid of the clip the module saw
    (None if unknown). window: ``(wt, wh, ww)`` for window attention (maps are per window).
    """

    name: str
    kind: str
    weights: torch.Tensor
    grid: tuple[int, int, int] | None = None
    window: tuple[int, int, int] | None = None

    def temporal(self) -> torch.Tensor | None:
        """Frame-to-frame matrix ``(t, t)`` (rows sum to 1), averaged over groups and heads.

        spatial: the identity (attention never leaves the frame); temporal: the map itself;
        full / sparse / joint: :func:`temporal_marginal`; window: the in-window ``(wt, wt)``
        matrix; cross: None (keys are condition tokens, not frames).
        """
        w = self.weights.float()
        if self.kind == "cross" or self.grid is None:
            return None
        t, h, wd = self.grid
        if self.kind == "spatial":
            return torch.eye(t)
        if self.kind == "temporal":
            return w.mean(dim=(0, 1))
        if self.kind in JOINT_KINDS:
            return temporal_marginal(w, t, h, wd).mean(dim=(0, 1))
        if self.kind == "window" and self.window is not None:
            return temporal_marginal(w, *self.window).mean(dim=(0, 1))
        return None

    def spatial(self) -> torch.Tensor | None:
        """Position-to-position matrix ``(hw, hw)`` (rows sum to 1), frames summed out."""
        w = self.weights.float()
        if self.kind == "cross" or self.grid is None:
            return None
        t, h, wd = self.grid
        if self.kind == "spatial":
            return w.mean(dim=(0, 1))
        if self.kind == "temporal":
            return torch.eye(h * wd)
        if self.kind in JOINT_KINDS:
            return spatial_marginal(w, t, h, wd).mean(dim=(0, 1))
        if self.kind == "window" and self.window is not None:
            return spatial_marginal(w, *self.window).mean(dim=(0, 1))
        return None

    def spatial_grid(self) -> tuple[int, int] | None:
        """``(h, w)`` of the positions :meth:`spatial` is over (the window's, for window)."""
        if self.grid is None:
            return None
        if self.kind == "window" and self.window is not None:
            return self.window[1], self.window[2]
        return self.grid[1], self.grid[2]


# --------------------------------------------------------------------------- capture
def _root_grid(model: nn.Module, x: torch.Tensor) -> tuple[int, int, int] | None:
    """Token grid of a patch-based model (VideoDiT) for input ``x``."""
    patch = getattr(model, "patch", None)
    if patch is None or not isinstance(x, torch.Tensor) or x.ndim not in (4, 5):
        return None
    t = x.shape[2] if x.ndim == 5 else 1
    h, w = x.shape[-2:]
    return t // patch[0], h // patch[1], w // patch[2]


@contextlib.contextmanager
def capture_attention_maps(model: nn.Module):
    """Record every attention call of ``model`` while inside; yields a list of AttentionMap.

    Attention runs through the reference path inside (slow, exact). Works for a whole
    model (UNet3D, VideoDiT, VideoFromImage) or a single attention block.
    """
    maps: list[AttentionMap] = []
    state = {"grid": None}
    handles = []

    def root_pre(_mod, args):
        if args:
            state["grid"] = _root_grid(model, args[0])

    def post(name, module, args, _out):
        store = raw.get(name or getattr(module, "kind", type(module).__name__), [])
        seen = counts.get(name, 0)
        if len(store) <= seen:  # e.g. temporal attention on one frame returns early
            return
        counts[name] = len(store)
        x = args[0] if args else None
        grid, window = None, None
        if isinstance(x, torch.Tensor) and x.ndim == 5:
            grid = tuple(int(s) for s in x.shape[2:])
            if hasattr(module, "window_for"):
                window = module.window_for(*grid)
        elif state["grid"] is not None:
            grid = state["grid"]
        for w in store[seen:]:
            maps.append(AttentionMap(name, getattr(module, "kind", "?"), w, grid, window))

    counts: dict[str, int] = {}
    handles.append(model.register_forward_pre_hook(root_pre))
    with return_attention_maps(model) as raw:
        for name, m in model.named_modules():
            if hasattr(m, "_record"):
                handles.append(m.register_forward_hook(
                    lambda mod, a, o, _n=name: post(_n, mod, a, o)))
        try:
            yield maps
        finally:
            for h in handles:
                h.remove()


@torch.no_grad()
def collect_attention_maps(model: nn.Module, x: torch.Tensor, t=None,
                           cond: dict | None = None) -> list[AttentionMap]:
    """Run ``model(x, t, cond)`` (or ``model(x)`` when ``t`` is None) and return its maps.

    x: ``(b, c, t, h, w)``; t: diffusion time (float or ``(b,)``) for a diffusion model.
    Returns the recorded :class:`AttentionMap` list in call order.
    """
    was_training = model.training
    model.eval()
    try:
        with capture_attention_maps(model) as maps:
            if t is None:
                model(x)
            else:
                model(x, t, cond)
    finally:
        model.train(was_training)
    return maps


# --------------------------------------------------------------------------- marginals
def _check_joint(weights: torch.Tensor, t: int, h: int, w: int) -> None:
    n = t * h * w
    if weights.shape[-1] != n or weights.shape[-2] != n:
        raise ValueError(f"weights: expected (..., {n}, {n}) for a (t, h, w)=({t}, {h}, {w}) "
                         f"grid in '(t h w)' order, got {tuple(weights.shape)}")


def temporal_marginal(weights: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Joint map ``(..., N, N)`` (N = t h w, "(t h w)" order) -> frame matrix ``(..., t, t)``.

    Entry ``[i, j]``: attention mass a query of frame ``i`` puts on all keys of frame
    ``j``, averaged over the ``h w`` queries of frame ``i``. Rows sum to 1.
    """
    _check_joint(weights, t, h, w)
    x = weights.reshape(*weights.shape[:-2], t, h * w, t, h * w)
    return x.sum(dim=-1).mean(dim=-2)


def spatial_marginal(weights: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    """Joint map ``(..., N, N)`` -> position matrix ``(..., hw, hw)`` (frames summed out).

    Entry ``[p, q]``: mass a query at position ``p`` puts on position ``q`` in any frame,
    averaged over the query's frames. Rows sum to 1.
    """
    _check_joint(weights, t, h, w)
    x = weights.reshape(*weights.shape[:-2], t, h * w, t, h * w)
    return x.sum(dim=-2).mean(dim=-3)


# --------------------------------------------------------------------------- statistics
def row_entropy(p: torch.Tensor, normalize: bool = False) -> torch.Tensor:
    """Entropy (nats) of each row of ``p (..., Lk)`` (rows = distributions) -> ``(...)``.

    ``normalize=True`` divides by ``log(Lk)`` (1 = uniform, 0 = one key).
    """
    p = p.float()
    ent = -(p * p.clamp_min(1e-12).log()).sum(-1)
    if normalize:
        n = p.shape[-1]
        ent = ent / math.log(n) if n > 1 else torch.zeros_like(ent)
    return ent


def expected_distance(p: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Mean over query rows of ``sum_j p[i, j] |c_i - c_j|``.

    p: ``(..., L, L)`` row-stochastic; coords: ``(L,)`` or ``(L, D)`` positions (Euclidean
    distance). Returns ``(...)``.
    """
    c = coords.float()
    if c.ndim == 1:
        c = c[:, None]
    dist = torch.cdist(c, c)  # (L, L)
    return (p.float() * dist).sum(-1).mean(-1)


def offset_profile(temporal: torch.Tensor) -> torch.Tensor:
    """Attention mass by frame offset ``d = key - query`` from a ``(t, t)`` matrix.

    Returns ``(2t - 1,)`` for ``d = -(t-1) .. t-1``: the mean over query frames ``i`` of
    ``temporal[i, i + d]`` (terms outside the clip count as 0).
    """
    t = temporal.shape[-1]
    out = torch.zeros(2 * t - 1)
    for d in range(-(t - 1), t):
        out[d + t - 1] = torch.diagonal(temporal.float(), offset=d).sum() / t
    return out


def temporal_locality(temporal: torch.Tensor) -> dict[str, float]:
    """Frame-distance statistics of a ``(t, t)`` row-stochastic matrix.

    ``distance``: expected ``|key frame - query frame|``; ``uniform``: the same for uniform
    attention over the clip; ``locality``: ``distance / uniform`` (0 = only the own frame,
    1 = no preference, > 1 = prefers far frames); ``same_frame``: mean diagonal;
    ``entropy``: mean row entropy normalised by ``log t``.
    """
    t = temporal.shape[-1]
    frames = torch.arange(t, dtype=torch.float32)
    dist = float(expected_distance(temporal, frames))
    uni = float(expected_distance(torch.full((t, t), 1.0 / t), frames))
    return {"distance": dist, "uniform": uni,
            "locality": dist / uni if uni > 0 else 0.0,
            "same_frame": float(torch.diagonal(temporal.float()).mean()),
            "entropy": float(row_entropy(temporal, normalize=True).mean())}


def summarize_map(m: AttentionMap) -> dict:
    """One row of numbers for an :class:`AttentionMap` (see the module docstring)."""
    row = {"name": m.name, "kind": m.kind, "shape": tuple(m.weights.shape),
           "grid": m.grid, "entropy": float(row_entropy(m.weights, normalize=True).mean())}
    tm = m.temporal()
    if tm is not None:
        loc = temporal_locality(tm)
        row.update(temporal_distance=loc["distance"], temporal_locality=loc["locality"],
                   same_frame=loc["same_frame"], temporal_entropy=loc["entropy"])
    sm = m.spatial()
    if sm is not None:
        h, w = m.spatial_grid()
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        coords = torch.stack([ys.flatten(), xs.flatten()], dim=-1)
        row.update(spatial_distance=float(expected_distance(sm, coords)),
                   spatial_entropy=float(row_entropy(sm, normalize=True).mean()))
    return row


def summarize_attention(maps: list[AttentionMap]) -> list[dict]:
    """:func:`summarize_map` for every recorded call, in call order."""
    return [summarize_map(m) for m in maps]


def query_volume(m: AttentionMap, query: tuple[int, int, int], head: int | None = None,
                 group: int = 0) -> torch.Tensor:
    """Where one query token ``(frame, row, col)`` looks: weights as a ``(t, h, w)`` volume.

    Joint kinds (full, sparse, joint): the row of the query reshaped to the grid. Temporal:
    weights over frames at the query's pixel (zero elsewhere); spatial: over the query's
    frame. ``head=None`` averages the heads. ``group`` selects the batch element (joint)
    or is ignored (temporal / spatial: the group is derived from the query).
    """
    if m.grid is None:
        raise ValueError(f"{m.name}: unknown token grid; cannot place the query")
    t, h, w = m.grid
    ti, yi, xi = query
    if not (0 <= ti < t and 0 <= yi < h and 0 <= xi < w):
        raise ValueError(f"query={query} outside the grid (t, h, w)={m.grid}")
    wts = m.weights.float()
    wts = wts.mean(1) if head is None else wts[:, head]  # (groups, Lq, Lk)
    vol = torch.zeros(t, h, w)
    if m.kind in JOINT_KINDS:
        q = (ti * h + yi) * w + xi
        return wts[group, q].reshape(t, h, w)
    if m.kind == "temporal":
        g = (group * h + yi) * w + xi  # groups are "(b h w)"
        vol[:, yi, xi] = wts[g, ti]
        return vol
    if m.kind == "spatial":
        g = group * t + ti  # groups are "(b t)"
        vol[ti] = wts[g, yi * w + xi].reshape(h, w)
        return vol
    raise ValueError(f"query_volume: kind {m.kind!r} not supported (joint, temporal, spatial)")


def token_dependency(layer: nn.Module, x: torch.Tensor, threshold: float = 1e-6) -> torch.Tensor:
    """Which input tokens each output token depends on: a ``(N, N)`` bool, ``N = t*h*w``.

    layer: ``(1, c, t, h, w) -> (1, c, t, h, w)`` (any attention block of ``nn/attention``).
    x: ``(1, c, t, h, w)``. Entry ``[i, j]`` is ``sum_ab |d out[a, i] / d in[b, j]| >
    threshold`` with tokens ordered ``(t h w)``: the *pattern* of an attention kind (full,
    divided, window, sparse, causal ...), read off the Jacobian rather than the maps, so it
    also counts paths through two attention steps (divided: space then time).

    A freshly built block is the identity (zero-initialised output projection) and depends
    on nothing but itself; perturb its weights first (``utils.perturb_weights``).
    One Jacobian of size ``(c N)^2``: keep ``c * t * h * w`` in the low thousands.
    """
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"x: expected one clip (1, c, t, h, w), got {tuple(x.shape)}")
    jac = torch.autograd.functional.jacobian(layer, x, vectorize=True)
    jac = rearrange(jac, "1 a t h w 1 b s i j -> (t h w) (s i j) a b")
    return jac.abs().sum((-1, -2)) > threshold


def cross_attention_per_frame(model: nn.Module, x: torch.Tensor, t, cond: dict) -> torch.Tensor:
    """Where each frame reads the condition: ``(b, frames, keys)``, rows summing to 1.

    Runs ``model(x, t, cond)`` and averages every cross-attention call's weights over
    heads, pixels and stages; key 0 is the null token of a text-conditioned U-Net, the
    rest are the caption's tokens. A dropped condition (``context_keep`` False) puts all
    its weight on the null token; per-frame rows are what action-word alignment (11.3.1)
    shapes. Stages whose frame count differs from ``x``'s (temporal downsampling) are
    left out. x: ``(b, c, t, h, w)``.
    """
    frames = x.shape[2]
    per_stage = []
    for m in collect_attention_maps(model, x, t, cond):
        if m.kind != "cross" or m.grid is None or m.grid[0] != frames:
            continue
        w = m.weights.float().mean(1)                       # (b, t*h*w, keys): mean of heads
        per_stage.append(w.unflatten(1, (frames, -1)).mean(2))  # (b, t, keys): mean of pixels
    if not per_stage:
        raise ValueError("model: no cross-attention call at the clip's frame rate "
                         "(build it with context_dim and pass cond['context'])")
    return torch.stack(per_stage).mean(0)


# --------------------------------------------------------------------------- plots
def _plt():
    import matplotlib.pyplot as plt
    return plt


def plot_attention_map(weights: torch.Tensor, ax=None, title: str | None = None,
                       xlabel: str = "key", ylabel: str = "query", cmap: str = "viridis"):
    """Show a 2-D ``(Lq, Lk)`` map (average any leading axes first). Returns the axis."""
    plt = _plt()
    w = weights.float()
    while w.ndim > 2:
        w = w.mean(0)
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3))
    im = ax.imshow(w.cpu().numpy(), cmap=cmap, vmin=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_temporal_maps(maps: list[AttentionMap], max_plots: int = 8, ncols: int = 4):
    """One ``(t, t)`` frame-to-frame matrix per recorded call (those that have one)."""
    plt = _plt()
    items = [(m, m.temporal()) for m in maps]
    items = [(m, tm) for m, tm in items if tm is not None and m.kind != "spatial"][:max_plots]
    if not items:
        raise ValueError("plot_temporal_maps: no map with a time axis (only spatial/cross)")
    ncols = min(ncols, len(items))
    nrows = math.ceil(len(items) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 3 * nrows), squeeze=False)
    for ax, (m, tm) in zip(axes.flat, items):
        plot_attention_map(tm, ax, f"{m.name or m.kind} ({m.kind})", "key frame", "query frame")
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_offset_profiles(maps: list[AttentionMap], ax=None):
    """Attention mass vs frame offset (key - query), one line per call with a time axis."""
    plt = _plt()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for m in maps:
        tm = m.temporal()
        if tm is None or m.kind == "spatial":
            continue
        t = tm.shape[-1]
        ax.plot(range(-(t - 1), t), offset_profile(tm).numpy(), marker="o", ms=3,
                label=f"{m.name or m.kind}")
    ax.set_xlabel("frame offset (key - query)")
    ax.set_ylabel("attention mass")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return ax


def plot_attention_summary(rows: list[dict], ax=None):
    """Bar chart of temporal locality and same-frame share per layer (from summaries)."""
    plt = _plt()
    rows = [r for r in rows if "temporal_locality" in r and r["kind"] != "spatial"]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 0.6 * len(rows) + 2), 3))
    x = torch.arange(len(rows)).numpy()
    ax.bar(x - 0.2, [r["temporal_locality"] for r in rows], 0.4, label="distance / uniform")
    ax.bar(x + 0.2, [r["same_frame"] for r in rows], 0.4, label="same-frame share")
    ax.axhline(1.0, color="gray", lw=0.8, ls="--")
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"] or r["kind"] for r in rows], rotation=60, ha="right",
                       fontsize=7)
    ax.legend(fontsize=7)
    ax.set_title("temporal pattern per attention layer", fontsize=9)
    return ax
