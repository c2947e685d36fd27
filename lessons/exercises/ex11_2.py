"""Exercises for lesson 11.2 (architectures). Fill in each function.

Each function raises ``NotImplementedError("Exercise 11.2.<k><letter>: ...")`` until you
write it. Check your work in a notebook with::

    from viddiff_mini.grading import check
    check("11.2.1a")

or from a terminal with ``pytest tests/exercises -k ex11_2`` (add ``--exercise 11.2.1a``
for one exercise). Video tensors are ``(b, c, t, h, w)``, float, in [-1, 1].

The exercise cells at the end of each notebook re-read this file every time they run (edit,
save, re-run the cell: no kernel restart) and print "implement 11.x.yz to see yours here"
while a function still raises ``NotImplementedError``. Each exercise there has a difficulty,
a time estimate and two folded hints; the student guide is ``lessons/README.md``.

Exercise 11.2 — "design an efficient video architecture":

1. architecture comparison (11.2.1a-c): three 3-D conv variants, their costs, a tiny race;
2. attention optimisation (11.2.2a-c): a sparse pattern, divided attention from a given
   attention function, statistics of attention maps;
3. information flow (11.2.3a-c): propagation of a perturbation, gradient receptive field,
   the bottleneck layer;
4. hybrid design (11.2.4a-c): CNN + Transformer block, motion-adaptive compute, early vs
   late fusion.

You may use ``torch``, ``einops`` and ``torch.nn.functional`` (imported below); write any
helper functions or classes you need in this file.
"""

from __future__ import annotations

import math  # noqa: F401
import time  # noqa: F401
from collections.abc import Callable

import torch
from einops import rearrange  # noqa: F401
from torch import nn
from torch.nn import functional as F  # noqa: F401

CONV_KINDS = ("full3d", "2plus1d", "pseudo3d")


# =========================================================================== Exercise 11.2.1a
def make_conv(kind: str, c_in: int, c_out: int, kernel: int = 3) -> nn.Module:
    """A video convolution ``(b, c_in, t, h, w) -> (b, c_out, t, h, w)`` ("same" padding).

    kind:
      * ``"full3d"``: one ``nn.Conv3d(c_in, c_out, k)`` (with bias).
      * ``"2plus1d"``: R(2+1)D: ``Conv3d(c_in, M, (1, k, k))`` -> SiLU ->
        ``Conv3d(M, c_out, (k, 1, 1))`` (both with bias), with
        ``M = floor(k^3 c_in c_out / (k^2 c_in + k c_out))`` (at least 1).
      * ``"pseudo3d"``: ``Conv2d(c_in, c_out, k)`` on every frame, then
        ``Conv1d(c_out, c_out, k)`` along time at every pixel (both with bias); the
        temporal conv is initialised to the identity (``nn.init.dirac_`` weights, zero bias).

    Raises ``ValueError`` for an unknown kind or an even / non-positive kernel.
    """
    raise NotImplementedError(
        "Exercise 11.2.1a: build the full3d, 2plus1d and pseudo3d video convolutions")


# =========================================================================== Exercise 11.2.1b
def conv_costs(kind: str, c_in: int, c_out: int, t: int, h: int, w: int, kernel: int = 3,
               batch: int = 1) -> dict[str, int]:
    """Analytic cost of ``make_conv(kind, c_in, c_out, kernel)`` on ``(batch, c_in, t, h, w)``.

    Returns ``{"params", "flops", "activation_bytes"}``:
      * params: weights and biases;
      * flops: 2 per multiply-add of the convolutions (biases, SiLU free; the
        ``FlopCounterMode`` convention), "same" padding, i.e. per output voxel and output
        channel ``k^3 c_in`` (full3d) etc.;
      * activation_bytes: float32 bytes of every feature map the layer produces: full3d
        the output; 2plus1d the M-channel map after the spatial conv, the same after SiLU,
        and the output; pseudo3d the c_out map after the 2-D conv and the output.
    """
    raise NotImplementedError(
        "Exercise 11.2.1b: count parameters, FLOPs and activation bytes of each conv variant")


# =========================================================================== Exercise 11.2.1c
def compare_convs(videos: torch.Tensor, kinds=CONV_KINDS, width: int = 8, steps: int = 20,
                  lr: float = 1e-2, seed: int = 0) -> dict[str, dict]:
    """Race the conv variants on a tiny frame-interpolation task.

    For each kind: ``torch.manual_seed(seed)``, then the network
    ``make_conv(kind, c, width) -> SiLU -> make_conv(kind, width, c)`` (c = channels of
    ``videos``). Input: ``videos (n, c, t, h, w)`` with every odd frame (1, 3, ...) set to
    0; target: ``videos``. Loss: mean squared error over the whole clip. Train ``steps``
    full-batch steps of ``torch.optim.Adam(lr=lr)``.

    Returns ``{kind: {"params", "loss_start", "loss_end", "hidden_loss_end", "seconds"}}``:
    parameters of the network, the loss before training and after the last step (with
    the final weights), the loss on the hidden (odd) frames only after training, and the
    training wall time.
    """
    raise NotImplementedError(
        "Exercise 11.2.1c: train a tiny two-conv network per variant on frame interpolation")


# =========================================================================== Exercise 11.2.2a
def sparse_attention_mask(t: int, h: int, w: int, local=(1, 1, 1), global_stride=None,
                          temporal_stride: int | None = None) -> torch.Tensor:
    """Boolean sparse attention pattern over the ``N = t h w`` tokens of a clip.

    Tokens are in "(t h w)" order: token ``(ti, yi, xi)`` has index ``(ti h + yi) w + xi``.
    ``mask[q, k]`` is True (q may attend to k) when any rule holds:

      * local: ``|t_q - t_k| <= rt`` and ``|y_q - y_k| <= rh`` and ``|x_q - x_k| <= rw``
        with ``local = (rt, rh, rw)``;
      * global: with ``global_stride = (st, sh, sw)``, token k is *global* when
        ``t_k % st == 0 and y_k % sh == 0 and x_k % sw == 0``; every token attends to
        global tokens and global tokens attend to every token;
      * strided: with ``temporal_stride = s``, q attends to k at the same pixel
        (``y_q == y_k``, ``x_q == x_k``) when ``(t_q - t_k) % s == 0``.

    Returns ``(N, N)`` bool.
    """
    raise NotImplementedError(
        "Exercise 11.2.2a: build the local + global + strided boolean attention mask")


# =========================================================================== Exercise 11.2.2b
def divided_attention(x: torch.Tensor, attend: Callable[[torch.Tensor], torch.Tensor],
                      attend_time: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      order: str = "space_time") -> torch.Tensor:
    """Divided space-time attention (TimeSformer) from a given token-mixing function.

    x: ``(b, c, t, h, w)``. ``attend(tokens (B, L, c)) -> (B, L, c)`` mixes the tokens of
    each of B independent sequences; ``attend_time`` (default: ``attend``) is used for
    the temporal step. Steps, each with a residual:

      * spatial: tokens "(b t) (h w) c": every frame is one sequence; ``x = x + attend(...)``;
      * temporal: tokens "(b h w) t c": every pixel's trajectory is one sequence;
        ``x = x + attend_time(...)``.

    ``order="space_time"`` (spatial first) or ``"time_space"``. Returns ``(b, c, t, h, w)``.
    """
    raise NotImplementedError(
        "Exercise 11.2.2b: fold to frames, attend, fold to pixel trajectories, attend")


# =========================================================================== Exercise 11.2.2c
def attention_pattern_stats(weights: torch.Tensor, t: int, h: int, w: int) -> dict:
    """Spatial and temporal statistics of a joint space-time attention map.

    weights: ``(N, N)`` (or ``(..., N, N)``, averaged over leading axes first), rows =
    queries, columns = keys, tokens in "(t h w)" order, rows summing to 1.

    Returns a dict:
      * ``"temporal"``: ``(t, t)``: ``T[i, j]`` = mean over the queries of frame i of the
        total weight they put on keys of frame j;
      * ``"spatial"``: ``(h w, h w)``: ``S[p, r]`` = mean over query frames of the total
        weight a query at position p puts on position r (any frame);
      * ``"same_frame"``: mean of the diagonal of T;
      * ``"temporal_distance"``: mean over i of ``sum_j T[i, j] |i - j|``;
      * ``"locality"``: temporal_distance divided by the same quantity for uniform
        attention (mean over i, j of ``|i - j|``); 0 when t == 1;
      * ``"temporal_entropy"``: mean row entropy of T divided by ``log t`` (0 when t == 1);
      * ``"spatial_entropy"``: mean row entropy of S divided by ``log(h w)`` (0 if h w == 1).
    """
    raise NotImplementedError(
        "Exercise 11.2.2c: marginalise the map over space and time and summarise it")


# =========================================================================== Exercise 11.2.3a
def feature_change_profile(fn: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor,
                           frame: int, delta: float = 1.0) -> torch.Tensor:
    """How far a change of one input frame travels in time through ``fn``.

    fn: ``(b, c, t, h, w) -> (b, c', t', h', w')`` (a layer or a stack of layers).
    Perturb: ``video' = video`` with ``delta`` added to every value of frame ``frame``.
    Returns ``(t',)``: ``change[j] = || fn(video')[:, :, j] - fn(video)[:, :, j] ||_2``
    (the L2 norm over batch, channels and pixels of frame j).
    """
    raise NotImplementedError(
        "Exercise 11.2.3a: perturb one frame and measure the change of every output frame")


# =========================================================================== Exercise 11.2.3b
def gradient_receptive_field(fn: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor,
                             frame: int) -> torch.Tensor:
    """Effective temporal receptive field of output frame ``frame`` of ``fn`` by gradients.

    Let ``y = fn(video)`` ``(b, c', t', h', w')`` and ``L = y[:, :, frame].sum()``.
    Returns ``(t,)`` (t = input frames): ``g[j] = sum |dL / d video[:, :, j]|`` over batch,
    channels and pixels, divided by ``g.sum()`` (all zeros stay zeros).
    """
    raise NotImplementedError(
        "Exercise 11.2.3b: back-propagate from one output frame to every input frame")


# =========================================================================== Exercise 11.2.3b
def effective_span(profile: torch.Tensor, mass: float = 0.9) -> int:
    """Fewest frames whose profile values add up to at least ``mass`` of the total.

    profile: ``(t,)`` non-negative. Returns 0 for an all-zero profile. Example:
    ``[0.05, 0.9, 0.05]`` -> 1 with mass 0.9, 2 with mass 0.95, 3 with mass 0.97.
    """
    raise NotImplementedError(
        "Exercise 11.2.3b: count the fewest frames that carry the given share of the profile")


# =========================================================================== Exercise 11.2.3c
def find_bottleneck(changes: dict[str, torch.Tensor], frame: int, drop: float = 0.5) -> dict:
    """Where does information about one frame stop reaching the other frames?

    changes: ``{layer name: (t,) per-frame feature change}`` in network order (e.g. from
    :func:`feature_change_profile` after perturbing input ``frame``).

    1. leak per layer: ``mean_{j != frame} change[j] / change[frame]`` (0 when
       ``change[frame] == 0``);
    2. for every layer i >= 1: ``ratio_i = leak_i / max(leak_0 .. leak_{i-1})``
       (skipped while that max is 0);
    3. the bottleneck is the layer with the smallest ratio (the first one on ties).

    Returns ``{"leak": {name: float}, "layer": name or None, "ratio": float (1.0 if no
    layer qualifies), "collapsed": ratio < drop}``.
    """
    raise NotImplementedError(
        "Exercise 11.2.3c: compute the leak per layer and find where it collapses")


# =========================================================================== Exercise 11.2.4a
def make_hybrid_block(dim: int, heads: int = 2, kernel: int = 3) -> nn.Module:
    """A hybrid CNN + Transformer block ``(b, dim, t, h, w) -> same``.

    The module has two sub-modules, each ``(b, dim, t, h, w) -> same`` and each adding its
    own residual, and ``forward(x) = mix(local(x))``:

      * ``local``: ``x + out(SiLU(conv(x)))`` with ``conv`` a ``kernel``-sized 3-D
        convolution ("same" padding) and ``out`` a 1x1x1 convolution initialised to zero.
        No normalisation (a norm over the clip would leak information everywhere);
      * ``mix``: ``x + proj(attention(norm(x)))``: per-token LayerNorm, multi-head
        self-attention over all ``t h w`` tokens (``F.scaled_dot_product_attention``),
        output Linear ``proj`` initialised to zero.

    So the block is the identity at initialisation. ``heads`` must divide ``dim``
    (``ValueError`` otherwise).
    """
    raise NotImplementedError(
        "Exercise 11.2.4a: a local conv residual followed by a global attention residual")


# =========================================================================== Exercise 11.2.4b
def motion_mask(video: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pixels with motion: ``(b, h, w)`` bool.

    ``d = |video[:, :, 1:] - video[:, :, :-1]|`` averaged over channels -> ``(b, t-1, h, w)``;
    a pixel moves when its largest ``d`` over time is ``> threshold``.
    """
    raise NotImplementedError(
        "Exercise 11.2.4b: threshold the largest frame difference of every pixel")


# =========================================================================== Exercise 11.2.4b
def adaptive_temporal(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor],
                      mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Spend temporal compute only where something moves.

    x: ``(b, c, t, h, w)``; mask: ``(b, h, w)`` bool; ``fn(seqs (M, t, c)) -> (M, t, c)``
    is a temporal layer applied to M pixel trajectories. Gather the trajectories of the
    pixels where ``mask`` is True (in ``mask.nonzero()`` order, i.e. "b h w" order), call
    ``fn`` once on them (not at all when there are none), and write the results back;
    every other pixel is returned unchanged.

    Returns ``(out (b, c, t, h, w), fraction)`` with ``fraction = M / (b h w)``, the share
    of trajectories the temporal layer processed.
    """
    raise NotImplementedError(
        "Exercise 11.2.4b: apply the temporal layer to the moving pixels only")


# =========================================================================== Exercise 11.2.4c
def make_fusion_classifier(kind: str, in_channels: int, frames: int, width: int = 8,
                           num_classes: int = 4) -> nn.Module:
    """A clip classifier ``(b, in_channels, frames, h, w) -> logits (b, num_classes)``.

    kind:
      * ``"early"``: frames stacked on channels, "b (c t) h w" (channel index ``c * frames
        + t``), then ``Conv2d(c t, width, 3, pad 1)`` -> SiLU -> ``Conv2d(width, width, 3,
        pad 1)`` -> SiLU -> mean over (h, w) -> ``Linear(width, num_classes)``;
      * ``"late"``: every frame through the same ``Conv2d(c, width, 3, pad 1)`` -> SiLU ->
        ``Conv2d(width, width, 3, pad 1)`` -> SiLU -> mean over (h, w), giving ``(b, t,
        width)``; concatenate the frames in order, "b (t width)", -> ``Linear(t width,
        num_classes)``.
    All layers with bias. ``ValueError`` for an unknown kind.
    """
    raise NotImplementedError(
        "Exercise 11.2.4c: build the early-fusion and the late-fusion classifiers")
