"""Reference solutions for lesson 11.2 (architectures). Same functions as
``lessons/exercises/ex11_2.py``, solved. Instructor only: never in the student handout.

Exercise 11.2 — "design an efficient video architecture":

1. architecture comparison (11.2.1a-c): three 3-D conv variants, their costs, a tiny race;
2. attention optimisation (11.2.2a-c): a sparse pattern, divided attention from a given
   attention function, statistics of attention maps;
3. information flow (11.2.3a-c): propagation of a perturbation, gradient receptive field,
   the bottleneck layer;
4. hybrid design (11.2.4a-c): CNN + Transformer block, motion-adaptive compute, early vs
   late fusion.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

CONV_KINDS = ("full3d", "2plus1d", "pseudo3d")


# =========================================================================== Exercise 11.2.1a
class _Full3d(nn.Module):
    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.conv = nn.Conv3d(c_in, c_out, k, padding=k // 2)

    def forward(self, x):
        return self.conv(x)


class _R2plus1d(nn.Module):
    def __init__(self, c_in, c_out, k):
        super().__init__()
        # R(2+1)D: pick the middle width so that the factorised conv has the parameters of a
        # full k x k x k kernel; the extra SiLU in the middle is what the factorisation buys.
        mid = max(1, (k**3 * c_in * c_out) // (k**2 * c_in + k * c_out))
        self.spatial = nn.Conv3d(c_in, mid, (1, k, k), padding=(0, k // 2, k // 2))
        self.temporal = nn.Conv3d(mid, c_out, (k, 1, 1), padding=(k // 2, 0, 0))

    def forward(self, x):
        return self.temporal(F.silu(self.spatial(x)))


class _Pseudo3d(nn.Module):
    def __init__(self, c_in, c_out, k):
        super().__init__()
        self.spatial = nn.Conv2d(c_in, c_out, k, padding=k // 2)
        self.temporal = nn.Conv1d(c_out, c_out, k, padding=k // 2)
        # identity at init: a pretrained 2-D conv keeps working frame by frame
        nn.init.dirac_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)

    def forward(self, x):
        b, _, t, h, w = x.shape
        y = self.spatial(rearrange(x, "b c t h w -> (b t) c h w"))
        y = self.temporal(rearrange(y, "(b t) c h w -> (b h w) c t", b=b))
        return rearrange(y, "(b h w) c t -> b c t h w", b=b, h=h)


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
    if kind not in CONV_KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {CONV_KINDS}")
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel={kernel}: expected a positive odd int (same padding)")
    cls = {"full3d": _Full3d, "2plus1d": _R2plus1d, "pseudo3d": _Pseudo3d}[kind]
    return cls(c_in, c_out, kernel)


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
    if kind not in CONV_KINDS:
        raise ValueError(f"kind={kind!r}; expected one of {CONV_KINDS}")
    k = kernel
    vox = batch * t * h * w  # output voxels per channel ("same" padding, stride 1)
    if kind == "full3d":
        params = k**3 * c_in * c_out + c_out
        macs = k**3 * c_in * c_out * vox
        acts = c_out * vox
    elif kind == "2plus1d":
        m = max(1, (k**3 * c_in * c_out) // (k**2 * c_in + k * c_out))
        params = k**2 * c_in * m + m + k * m * c_out + c_out
        macs = (k**2 * c_in * m + k * m * c_out) * vox
        acts = 2 * m * vox + c_out * vox
    else:
        params = k**2 * c_in * c_out + c_out + k * c_out * c_out + c_out
        macs = (k**2 * c_in * c_out + k * c_out * c_out) * vox
        acts = 2 * c_out * vox
    return {"params": params, "flops": 2 * macs, "activation_bytes": 4 * acts}


# =========================================================================== Exercise 11.2.1c
def _interp_task(videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Input: the clip with every odd frame zeroed; target: the whole clip."""
    hidden = torch.zeros(videos.shape[2], dtype=torch.bool)
    hidden[1::2] = True
    x = videos.clone()
    x[:, :, hidden] = 0
    return x, hidden


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
    x, hidden = _interp_task(videos)
    c = videos.shape[1]
    out = {}
    for kind in kinds:
        torch.manual_seed(seed)
        net = nn.Sequential(make_conv(kind, c, width), nn.SiLU(), make_conv(kind, width, c))
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        with torch.no_grad():
            start = F.mse_loss(net(x), videos).item()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = F.mse_loss(net(x), videos)
            opt.zero_grad()
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            pred = net(x)
            end = F.mse_loss(pred, videos).item()
            hid = F.mse_loss(pred[:, :, hidden], videos[:, :, hidden]).item()
        out[kind] = {"params": sum(p.numel() for p in net.parameters()), "loss_start": start,
                     "loss_end": end, "hidden_loss_end": hid, "seconds": seconds}
    return out


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
    ti, yi, xi = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w),
                                indexing="ij")
    ti, yi, xi = ti.flatten(), yi.flatten(), xi.flatten()  # (N,) coordinates, "(t h w)"

    def diff(a):  # |a_q - a_k| as an (N, N) matrix
        return (a[:, None] - a[None, :]).abs()

    rt, rh, rw = local
    mask = (diff(ti) <= rt) & (diff(yi) <= rh) & (diff(xi) <= rw)
    if global_stride is not None:
        st, sh, sw = global_stride
        is_global = (ti % st == 0) & (yi % sh == 0) & (xi % sw == 0)
        mask = mask | is_global[None, :] | is_global[:, None]
    if temporal_stride is not None:
        same_pixel = (diff(yi) == 0) & (diff(xi) == 0)
        mask = mask | (same_pixel & (diff(ti) % temporal_stride == 0))
    return mask


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
    if order not in ("space_time", "time_space"):
        raise ValueError(f"order={order!r}; expected 'space_time' or 'time_space'")
    attend_time = attend_time or attend
    b, c, t, h, w = x.shape

    def spatial(v):
        tok = rearrange(v, "b c t h w -> (b t) (h w) c")
        return v + rearrange(attend(tok), "(b t) (h w) c -> b c t h w", b=b, h=h)

    def temporal(v):
        tok = rearrange(v, "b c t h w -> (b h w) t c")
        return v + rearrange(attend_time(tok), "(b h w) t c -> b c t h w", b=b, h=h)

    if order == "space_time":
        return temporal(spatial(x))
    return spatial(temporal(x))


# =========================================================================== Exercise 11.2.2c
def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


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
    n = t * h * w
    a = weights.float()
    while a.ndim > 2:
        a = a.mean(0)
    if a.shape != (n, n):
        raise ValueError(f"weights: expected ({n}, {n}) for t, h, w = {t}, {h}, {w}, got "
                         f"{tuple(a.shape)}")
    blocks = a.reshape(t, h * w, t, h * w)  # [query frame, query pos, key frame, key pos]
    temporal = blocks.sum(3).mean(1)        # sum over key positions, mean over query positions
    spatial = blocks.sum(2).mean(0)         # sum over key frames, mean over query frames
    frames = torch.arange(t, dtype=torch.float32)
    gap = (frames[:, None] - frames[None, :]).abs()
    distance = float((temporal * gap).sum(1).mean())
    uniform = float(gap.mean())
    return {
        "temporal": temporal,
        "spatial": spatial,
        "same_frame": float(torch.diagonal(temporal).mean()),
        "temporal_distance": distance,
        "locality": distance / uniform if uniform > 0 else 0.0,
        "temporal_entropy": float(_entropy(temporal).mean() / math.log(t)) if t > 1 else 0.0,
        "spatial_entropy": float(_entropy(spatial).mean() / math.log(h * w)) if h * w > 1
        else 0.0,
    }


# =========================================================================== Exercise 11.2.3a
@torch.no_grad()
def feature_change_profile(fn: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor,
                           frame: int, delta: float = 1.0) -> torch.Tensor:
    """How far a change of one input frame travels in time through ``fn``.

    fn: ``(b, c, t, h, w) -> (b, c', t', h', w')`` (a layer or a stack of layers).
    Perturb: ``video' = video`` with ``delta`` added to every value of frame ``frame``.
    Returns ``(t',)``: ``change[j] = || fn(video')[:, :, j] - fn(video)[:, :, j] ||_2``
    (the L2 norm over batch, channels and pixels of frame j).
    """
    if not 0 <= frame < video.shape[2]:
        raise ValueError(f"frame={frame} outside the clip (0..{video.shape[2] - 1})")
    moved = video.clone()
    moved[:, :, frame] += delta
    diff = fn(moved) - fn(video)
    return diff.pow(2).sum(dim=(0, 1, 3, 4)).sqrt()


# =========================================================================== Exercise 11.2.3b
def gradient_receptive_field(fn: Callable[[torch.Tensor], torch.Tensor], video: torch.Tensor,
                             frame: int) -> torch.Tensor:
    """Effective temporal receptive field of output frame ``frame`` of ``fn`` by gradients.

    Let ``y = fn(video)`` ``(b, c', t', h', w')`` and ``L = y[:, :, frame].sum()``.
    Returns ``(t,)`` (t = input frames): ``g[j] = sum |dL / d video[:, :, j]|`` over batch,
    channels and pixels, divided by ``g.sum()`` (all zeros stay zeros).
    """
    x = video.detach().clone().requires_grad_(True)
    y = fn(x)
    grad, = torch.autograd.grad(y[:, :, frame].sum(), x, allow_unused=True)
    if grad is None:
        return torch.zeros(video.shape[2])
    g = grad.abs().sum(dim=(0, 1, 3, 4))
    return g / g.sum() if g.sum() > 0 else g


def effective_span(profile: torch.Tensor, mass: float = 0.9) -> int:
    """Fewest frames whose profile values add up to at least ``mass`` of the total.

    profile: ``(t,)`` non-negative. Returns 0 for an all-zero profile. Example:
    ``[0.05, 0.9, 0.05]`` -> 1 with mass 0.9, 2 with mass 0.95, 3 with mass 0.97.
    """
    total = float(profile.sum())
    if total <= 0:
        return 0
    cum = torch.cumsum(profile.sort(descending=True).values / total, 0)
    # the first position where the running share reaches `mass` (tiny slack for rounding)
    return int((cum < mass - 1e-6).sum()) + 1


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
    leak = {}
    for name, c in changes.items():
        c = c.float()
        if c[frame] <= 0 or c.shape[0] < 2:
            leak[name] = 0.0
        else:
            others = torch.cat([c[:frame], c[frame + 1:]])
            leak[name] = float(others.mean() / c[frame])
    layer, ratio, best = None, 1.0, None
    for i, (name, value) in enumerate(leak.items()):
        if i > 0 and best > 0:
            r = value / best
            if r < ratio or layer is None:
                layer, ratio = name, r
        best = value if best is None else max(best, value)
    return {"leak": leak, "layer": layer, "ratio": ratio, "collapsed": ratio < drop}


# =========================================================================== Exercise 11.2.4a
class _LocalConv(nn.Module):
    """x + conv branch: a k x k x k conv -> SiLU -> 1x1x1 conv (zero-init). No norm."""

    def __init__(self, dim, kernel):
        super().__init__()
        self.conv = nn.Conv3d(dim, dim, kernel, padding=kernel // 2)
        self.out = nn.Conv3d(dim, dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x):
        return x + self.out(F.silu(self.conv(x)))


class _GlobalAttention(nn.Module):
    """x + joint space-time self-attention over all t h w tokens (zero-init output)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x):
        b, c, t, h, w = x.shape
        tok = self.norm(rearrange(x, "b c t h w -> b (t h w) c"))
        q, k, v = rearrange(self.qkv(tok), "b n (three hd d) -> three b hd n d", three=3,
                            hd=self.heads)
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b hd n d -> b n (hd d)")
        return x + rearrange(self.proj(out), "b (t h w) c -> b c t h w", t=t, h=h)


class _Hybrid(nn.Module):
    def __init__(self, dim, heads, kernel):
        super().__init__()
        self.local = _LocalConv(dim, kernel)     # CNN: cheap, local motion and texture
        self.mix = _GlobalAttention(dim, heads)  # Transformer: long-range, content-based

    def forward(self, x):
        return self.mix(self.local(x))


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
    if dim % heads:
        raise ValueError(f"heads={heads} must divide dim={dim}")
    return _Hybrid(dim, heads, kernel)


# =========================================================================== Exercise 11.2.4b
def motion_mask(video: torch.Tensor, threshold: float) -> torch.Tensor:
    """Pixels with motion: ``(b, h, w)`` bool.

    ``d = |video[:, :, 1:] - video[:, :, :-1]|`` averaged over channels -> ``(b, t-1, h, w)``;
    a pixel moves when its largest ``d`` over time is ``> threshold``.
    """
    diff = (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=1)
    return diff.amax(dim=1) > threshold


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
    seqs = rearrange(x, "b c t h w -> b h w t c")
    out = seqs.clone()
    m = int(mask.sum())
    if m > 0:
        out[mask] = fn(seqs[mask]).to(out.dtype)
    return rearrange(out, "b h w t c -> b c t h w"), m / mask.numel()


# =========================================================================== Exercise 11.2.4c
class _EarlyFusion(nn.Module):
    def __init__(self, c, frames, width, num_classes):
        super().__init__()
        self.frames = frames
        # all frames stacked on channels: the very first conv already compares frames
        self.body = nn.Sequential(nn.Conv2d(c * frames, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU())
        self.head = nn.Linear(width, num_classes)

    def forward(self, video):
        x = rearrange(video, "b c t h w -> b (c t) h w")
        return self.head(self.body(x).mean(dim=(2, 3)))


class _LateFusion(nn.Module):
    def __init__(self, c, frames, width, num_classes):
        super().__init__()
        self.frames = frames
        # one shared per-frame encoder: frames only meet in the final linear layer
        self.body = nn.Sequential(nn.Conv2d(c, width, 3, padding=1), nn.SiLU(),
                                  nn.Conv2d(width, width, 3, padding=1), nn.SiLU())
        self.head = nn.Linear(frames * width, num_classes)

    def forward(self, video):
        b = video.shape[0]
        feats = self.body(rearrange(video, "b c t h w -> (b t) c h w")).mean(dim=(2, 3))
        return self.head(rearrange(feats, "(b t) d -> b (t d)", b=b))


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
    if kind == "early":
        return _EarlyFusion(in_channels, frames, width, num_classes)
    if kind == "late":
        return _LateFusion(in_channels, frames, width, num_classes)
    raise ValueError(f"kind={kind!r}; expected 'early' or 'late'")
