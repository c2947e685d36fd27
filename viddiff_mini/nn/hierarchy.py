"""Section 11.2.4: hierarchical temporal modelling — several frame rates, keyframes first.

Different time scales want different processing: a bounce happens within two or three
frames, a pan unfolds over the whole clip. Looking at the clip at several frame rates
handles both cheaply: a temporal kernel of 3 taps at rate 1/4 spans 12 frames of the
original clip, for a quarter of the work of the same kernel at full rate.

Modules (all map videos ``(b, c, t, h, w)``; ``t`` changes only where the name says so):

* :class:`TemporalDownsample` ``(b, c, t, h, w) -> (b, c, t / f, h, w)`` (learned, average
  or plain subsampling: every f-th frame is a *keyframe*);
* :class:`TemporalUpsample` ``(b, c, t, h, w) -> (b, c, t * f, h, w)`` (nearest, linear or
  learned transposed conv initialised to nearest);
* :class:`MultiRateTemporalBlock`: processes the clip at rates ``1, 1/2, 1/4, ...``, brings
  every branch back to full rate and fuses them; starts as the identity (zero-init output);
* :class:`KeyframeInterpolator`: keyframes-then-interpolation *generation*: one diffusion
  model generates the clip at a low frame rate, a second fills in the frames between
  keyframes, conditioned on them (the interpolation model reads the keyframes through the
  generic ``cond["concat"]`` channels every model here understands);
* :func:`hierarchy_cost` and :func:`keyframe_cost`: the bookkeeping that says why.

A frame count the hierarchy cannot divide is refused at construction time, naming the
constraint (``frames=12 is not divisible by 8 ...``), never as a reshape error later.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .attention import TemporalAttention

DOWN_MODES = ("conv", "avg", "stride")
UP_MODES = ("nearest", "linear", "conv")
MIXERS = ("conv", "attention")
FUSIONS = ("sum", "concat")


# --------------------------------------------------------------------------- checks
def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return value


def check_divisible_frames(frames: int, factor: int, owner: str, why: str = "") -> int:
    """Raise a ``ValueError`` naming the constraint unless ``factor`` divides ``frames``."""
    _positive_int(frames, f"{owner}: frames")
    if frames % factor:
        extra = f" ({why})" if why else ""
        raise ValueError(f"{owner}: frames={frames} is not divisible by {factor}{extra}; "
                         f"choose frames that are a multiple of {factor}, e.g. "
                         f"{max(factor, frames // factor * factor)} or "
                         f"{(frames // factor + 1) * factor}")
    return frames


def hierarchy_frames(frames: int, levels: int, factor: int = 2) -> list[int]:
    """Frame count at each level of a temporal pyramid: ``[t, t/f, t/f^2, ...]``.

    ``levels`` counts the downsampling steps (so the list has ``levels + 1`` entries). A
    frame count the pyramid cannot divide ``levels`` times raises ``ValueError`` naming
    the constraint (``frames % factor**levels == 0``).
    """
    _positive_int(levels + 1, "levels + 1")
    _positive_int(factor, "factor")
    check_divisible_frames(frames, factor**levels, "hierarchy",
                           f"{levels} temporal downsampling step(s) by {factor} need "
                           f"frames % {factor}**{levels} == 0")
    return [frames // factor**i for i in range(levels + 1)]


# --------------------------------------------------------------------------- down / up
class TemporalDownsample(nn.Module):
    """``(b, c, t, h, w) -> (b, c, t / factor, h, w)``: fewer frames, same pixels.

    mode:
      * ``"conv"``: a learned temporal conv, kernel and stride ``factor`` (initialised to the
        average, so it starts as ``"avg"``);
      * ``"avg"``: the mean of each group of ``factor`` frames (a temporal low-pass);
      * ``"stride"``: every ``factor``-th frame (``0, f, 2f, ...``): the keyframes.
    ``frames`` (optional) is checked at construction; the forward checks the actual ``t``.
    """

    def __init__(self, channels: int, factor: int = 2, mode: str = "conv",
                 frames: int | None = None):
        super().__init__()
        self.channels = _positive_int(channels, "TemporalDownsample: channels")
        self.factor = _positive_int(factor, "TemporalDownsample: factor")
        if mode not in DOWN_MODES:
            raise ValueError(f"TemporalDownsample: mode={mode!r}; expected one of {DOWN_MODES}")
        self.mode = mode
        if frames is not None:
            check_divisible_frames(frames, factor, "TemporalDownsample",
                                   f"downsampling by factor={factor}")
        self.conv = None
        if mode == "conv":
            self.conv = nn.Conv3d(channels, channels, (factor, 1, 1), stride=(factor, 1, 1))
            with torch.no_grad():  # start as the average of each frame group
                self.conv.weight.zero_()
                idx = torch.arange(channels)
                self.conv.weight[idx, idx] = 1.0 / factor
                self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> (b, c, t // factor, h, w)."""
        if x.ndim != 5:
            raise ValueError(f"TemporalDownsample: expected (b, c, t, h, w), got {tuple(x.shape)}")
        check_divisible_frames(x.shape[2], self.factor, "TemporalDownsample",
                               f"downsampling by factor={self.factor}")
        if self.factor == 1:
            return x
        if self.mode == "conv":
            return self.conv(x)
        if self.mode == "avg":
            return F.avg_pool3d(x, (self.factor, 1, 1))
        return x[:, :, :: self.factor]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor={self.factor}, mode={self.mode!r}"


class TemporalUpsample(nn.Module):
    """``(b, c, t, h, w) -> (b, c, t * factor, h, w)``.

    mode:
      * ``"nearest"``: repeat each frame ``factor`` times;
      * ``"linear"``: linear interpolation in time (``align_corners=False``);
      * ``"conv"``: a learned transposed temporal conv, initialised to ``"nearest"``.
    """

    def __init__(self, channels: int, factor: int = 2, mode: str = "nearest"):
        super().__init__()
        self.channels = _positive_int(channels, "TemporalUpsample: channels")
        self.factor = _positive_int(factor, "TemporalUpsample: factor")
        if mode not in UP_MODES:
            raise ValueError(f"TemporalUpsample: mode={mode!r}; expected one of {UP_MODES}")
        self.mode = mode
        self.conv = None
        if mode == "conv":
            self.conv = nn.ConvTranspose3d(channels, channels, (factor, 1, 1),
                                           stride=(factor, 1, 1))
            with torch.no_grad():  # start as nearest: every output frame copies its source
                self.conv.weight.zero_()
                idx = torch.arange(channels)
                self.conv.weight[idx, idx] = 1.0
                self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> (b, c, t * factor, h, w)."""
        if x.ndim != 5:
            raise ValueError(f"TemporalUpsample: expected (b, c, t, h, w), got {tuple(x.shape)}")
        if self.factor == 1:
            return x
        if self.mode == "nearest":
            return x.repeat_interleave(self.factor, dim=2)
        if self.mode == "linear":
            b, c, t, h, w = x.shape
            return F.interpolate(x, size=(t * self.factor, h, w), mode="trilinear",
                                 align_corners=False)
        return self.conv(x)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor={self.factor}, mode={self.mode!r}"


# --------------------------------------------------------------------------- multi-rate block
class _TemporalConvMixer(nn.Module):
    """``(b, c, t, h, w) -> same``: a temporal conv (kernel ``k`` along t only) + SiLU."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv(x))


class MultiRateTemporalBlock(nn.Module):
    """Process a clip at several frame rates and fuse: ``(b, c, t, h, w) -> same``.

    For each rate ``r`` in ``rates`` (1 = full rate, 2 = half, ...)::

        branch_r = up_r( mix_r( avgpool_r( norm(x) ) ) )      # (b, c, t, h, w)
        out      = x + proj( fuse(branch_1, branch_2, ...) )   # proj starts at zero

    ``mix_r`` is a temporal conv of ``kernel`` taps (``mixer="conv"``: it spans about
    ``kernel * r`` original frames) or temporal self-attention (``mixer="attention"``:
    ``(t / r)^2`` scores per pixel instead of ``t^2``). ``fuse="sum"`` adds the branches,
    ``"concat"`` stacks them on channels for the 1x1x1 ``proj``. The zero-initialised
    ``proj`` makes a new block the identity, so it can be dropped into a trained network.

    ``frames`` is the clip length the block is built for: every rate must divide it
    (checked here, at construction, with the constraint named); the forward re-checks the
    actual ``t``.
    """

    def __init__(self, channels: int, frames: int, rates: Sequence[int] = (1, 2, 4),
                 mixer: str = "conv", kernel: int = 3, heads: int = 4, fuse: str = "sum"):
        super().__init__()
        self.channels = _positive_int(channels, "MultiRateTemporalBlock: channels")
        rates = tuple(rates)
        if not rates or len(set(rates)) != len(rates):
            raise ValueError(f"MultiRateTemporalBlock: rates={rates!r} must be distinct "
                             f"positive ints")
        for r in rates:
            _positive_int(r, "MultiRateTemporalBlock: each rate")
        if mixer not in MIXERS:
            raise ValueError(f"MultiRateTemporalBlock: mixer={mixer!r}; expected one of {MIXERS}")
        if fuse not in FUSIONS:
            raise ValueError(f"MultiRateTemporalBlock: fuse={fuse!r}; expected one of {FUSIONS}")
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"MultiRateTemporalBlock: kernel={kernel} must be a positive odd "
                             f"int (same-length temporal conv)")
        self.lcm = math.lcm(*rates)
        self.frames = check_divisible_frames(
            frames, self.lcm, "MultiRateTemporalBlock",
            f"rates={rates} process the clip at t/r frames, so every rate must divide "
            f"frames: frames % lcm(rates)={self.lcm} == 0")
        self.rates, self.mixer, self.kernel, self.heads, self.fuse = rates, mixer, kernel, heads, fuse
        self.norm = nn.GroupNorm(math.gcd(32, channels), channels)
        if mixer == "conv":
            self.mix = nn.ModuleList(_TemporalConvMixer(channels, kernel) for _ in rates)
        else:
            self.mix = nn.ModuleList(TemporalAttention(channels, heads) for _ in rates)
        fused = channels * (len(rates) if fuse == "concat" else 1)
        self.proj = nn.Conv3d(fused, channels, 1)
        nn.init.zeros_(self.proj.weight)  # identity at init
        nn.init.zeros_(self.proj.bias)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each rate's contribution before fusion, at full rate: list of (b, c, t, h, w)."""
        if x.ndim != 5 or x.shape[1] != self.channels:
            raise ValueError(f"MultiRateTemporalBlock: expected (b, {self.channels}, t, h, w), "
                             f"got {tuple(x.shape)}")
        check_divisible_frames(x.shape[2], self.lcm, "MultiRateTemporalBlock",
                               f"rates={self.rates}: frames % lcm(rates)={self.lcm} == 0")
        y = self.norm(x)
        out = []
        for r, mix in zip(self.rates, self.mix):
            z = F.avg_pool3d(y, (r, 1, 1)) if r > 1 else y
            z = mix(z)
            out.append(z.repeat_interleave(r, dim=2) if r > 1 else z)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> x + proj(fuse(branches)), same shape."""
        parts = self.branches(x)
        fused = torch.cat(parts, dim=1) if self.fuse == "concat" else torch.stack(parts).sum(0)
        return x + self.proj(fused)

    def receptive_fields(self) -> dict[int, int]:
        """Frames of the original clip each rate's branch can see (``rate -> span``)."""
        if self.mixer == "attention":
            return {r: self.frames for r in self.rates}
        return {r: self.kernel * r for r in self.rates}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, frames={self.frames}, rates={self.rates}, "
                f"mixer={self.mixer!r}, fuse={self.fuse!r}")


# --------------------------------------------------------------------------- cost accounting
def hierarchy_cost(frames: int, height: int, width: int, channels: int,
                   rates: Sequence[int] = (1, 2, 4), mixer: str = "conv", kernel: int = 3,
                   fuse: str = "sum", batch: int = 1) -> dict:
    """Parameters and FLOPs of a :class:`MultiRateTemporalBlock`, per rate and in total.

    FLOPs follow ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of convs,
    linear layers and attention matmuls; norms, pooling and element-wise ops are free), so
    the total equals what the counter measures under the math SDPA backend (tested).

    Also returns ``"single_rate"``: what one full-rate mixer with the same temporal reach
    would cost (a conv with ``kernel * max(rates)`` taps, or full-rate attention), which is
    the comparison that makes the hierarchy worthwhile.

    Returns ``{"params", "flops", "per_rate": [{"rate", "frames", "flops", "span"}],
    "fuse_flops", "single_rate": {"params", "flops", "span"}}``.
    """
    if mixer not in MIXERS:
        raise ValueError(f"hierarchy_cost: mixer={mixer!r}; expected one of {MIXERS}")
    if fuse not in FUSIONS:
        raise ValueError(f"hierarchy_cost: fuse={fuse!r}; expected one of {FUSIONS}")
    rates = tuple(rates)
    check_divisible_frames(frames, math.lcm(*rates), "hierarchy_cost",
                           f"every rate in {rates} must divide frames")
    c, hw = channels, height * width

    def mixer_cost(t: int, k: int) -> tuple[int, int]:
        n = batch * t * hw
        if mixer == "conv":  # Conv3d (k,1,1) c->c with bias, then SiLU
            return c * c * k + c, 2 * n * c * c * k
        # TemporalAttention: LayerNorm(c), qkv (no bias), proj (bias); scores over t per pixel
        params = 2 * c + 3 * c * c + c * c + c
        flops = 2 * n * c * 3 * c + 4 * batch * hw * t * t * c + 2 * n * c * c
        return params, flops

    per_rate, params, flops = [], 0, 0
    for r in rates:
        p, f = mixer_cost(frames // r, kernel)
        span = frames if mixer == "attention" else kernel * r
        per_rate.append({"rate": r, "frames": frames // r, "flops": f, "params": p, "span": span})
        params, flops = params + p, flops + f
    fused = c * (len(rates) if fuse == "concat" else 1)
    fuse_params = fused * c + c + 2 * c  # proj (1x1x1 conv) + GroupNorm affine
    fuse_flops = 2 * batch * frames * hw * fused * c
    big_k = kernel * max(rates)
    if mixer == "conv":
        single_p, single_f = mixer_cost(frames, big_k)
        single_span = big_k
    else:
        single_p, single_f = mixer_cost(frames, kernel)
        single_span = frames
    return {"params": params + fuse_params, "flops": flops + fuse_flops,
            "per_rate": per_rate, "fuse_flops": fuse_flops,
            "single_rate": {"params": single_p, "flops": single_f, "span": single_span}}


def keyframe_cost(frames: int, stride: int, tokens_per_frame: int, dim: int) -> dict:
    """Attention-score FLOPs of generating ``frames`` at once vs keyframes then interpolation.

    Full space-time attention over the whole clip costs ``4 (t n)^2 d`` per layer
    (``n = tokens_per_frame``). Keyframes first: ``t / stride`` keyframes attend jointly
    (``4 (t n / s)^2 d``), then each of the ``t / s`` segments is filled in by a model that
    sees its ``s`` frames plus the next keyframe (``4 ((s + 1) n)^2 d`` each). The peak
    sequence length — what sets attention memory — drops from ``t n`` to
    ``max(t / s, s + 1) n``.
    """
    check_divisible_frames(frames, stride, "keyframe_cost", f"stride={stride} keyframes")
    n_key = frames // stride
    direct = 4 * (frames * tokens_per_frame) ** 2 * dim
    key = 4 * (n_key * tokens_per_frame) ** 2 * dim
    interp = n_key * 4 * ((stride + 1) * tokens_per_frame) ** 2 * dim
    return {"direct_flops": direct, "keyframe_flops": key, "interp_flops": interp,
            "hierarchical_flops": key + interp,
            "direct_seq": frames * tokens_per_frame,
            "peak_seq": max(n_key, stride + 1) * tokens_per_frame}


# --------------------------------------------------------------------------- keyframes
def keyframe_indices(frames: int, stride: int) -> list[int]:
    """Indices of keyframes ``0, s, 2s, ...`` (``frames`` must be a multiple of ``stride``)."""
    check_divisible_frames(frames, stride, "keyframe_indices", f"stride={stride} keyframes")
    return list(range(0, frames, stride))


def interpolation_condition(keyframes: torch.Tensor, stride: int) -> torch.Tensor:
    """Keyframes ``(b, c, k, h, w)`` -> conditioning maps ``(b, c + 1, k * stride, h, w)``.

    Channels ``[:c]``: the keyframes placed at frames ``0, s, 2s, ...`` and linearly
    interpolated in between (after the last keyframe the last one is held); channel ``c``:
    a mask, 1 at keyframes and 0 elsewhere, so the model knows which frames are given.
    This is what the interpolation model reads as ``cond["concat"]``.
    """
    if keyframes.ndim != 5:
        raise ValueError(f"keyframes: expected (b, c, k, h, w), got {tuple(keyframes.shape)}")
    _positive_int(stride, "stride")
    b, c, k, h, w = keyframes.shape
    frames = k * stride
    i = torch.arange(frames, device=keyframes.device)
    left = i // stride
    right = (left + 1).clamp(max=k - 1)
    frac = ((i % stride).float() / stride).to(keyframes.dtype)
    frac = torch.where(left == right, torch.zeros_like(frac), frac)  # hold after the last key
    interp = (keyframes[:, :, left] * (1 - frac)[None, None, :, None, None]
              + keyframes[:, :, right] * frac[None, None, :, None, None])
    mask = (i % stride == 0).to(keyframes.dtype)
    mask = mask[None, None, :, None, None].expand(b, 1, frames, h, w)
    return torch.cat([interp, mask], dim=1)


class KeyframeInterpolator(nn.Module):
    """Keyframes-then-interpolation generation with two diffusion models.

    * ``keyframe_model`` generates clips of ``frames / stride`` frames: the video at a low
      frame rate (long-range motion, cheap: short sequences).
    * ``interp_model`` generates all ``frames`` frames conditioned on the keyframes through
      ``cond["concat"]`` (:func:`interpolation_condition`: ``c + 1`` channels), so it must be
      built with ``concat_channels = in_channels + 1``; it only has to add local motion.

    ``diffusion`` is a :class:`viddiff_mini.diffusion.Diffusion` (anything with
    ``loss(model, x0, cond, generator)`` and ``sample(model, shape, cond, ...)``).
    ``frames`` must be a multiple of ``stride`` (checked here).
    """

    def __init__(self, keyframe_model: nn.Module, interp_model: nn.Module, diffusion,
                 frames: int, stride: int = 4):
        super().__init__()
        self.stride = _positive_int(stride, "KeyframeInterpolator: stride")
        self.frames = check_divisible_frames(
            frames, stride, "KeyframeInterpolator",
            f"keyframes every stride={stride} frames need frames % stride == 0")
        self.keyframe_model, self.interp_model = keyframe_model, interp_model
        self.diffusion = diffusion

    def split(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip ``(b, c, t, h, w)`` -> (keyframes ``(b, c, t/s, h, w)``, concat ``(b, c+1, t, h, w)``)."""
        if x0.ndim != 5 or x0.shape[2] != self.frames:
            raise ValueError(f"KeyframeInterpolator: expected clips (b, c, {self.frames}, h, w), "
                             f"got {tuple(x0.shape)}")
        keys = x0[:, :, :: self.stride]
        return keys, interpolation_condition(keys, self.stride)

    def loss(self, x0: torch.Tensor, cond: dict | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training losses of both stages: ``{"keyframe", "interp", "total"}`` (scalars)."""
        keys, concat = self.split(x0)
        l_key = self.diffusion.loss(self.keyframe_model, keys, cond=cond, generator=generator)
        icond = dict(cond or {})
        icond["concat"] = concat
        l_int = self.diffusion.loss(self.interp_model, x0, cond=icond, generator=generator)
        return {"keyframe": l_key, "interp": l_int, "total": l_key + l_int}

    @torch.no_grad()
    def generate(self, batch: int, channels: int, height: int, width: int,
                 cond: dict | None = None, steps: int = 20,
                 generator: torch.Generator | None = None, device=None,
                 keep_keyframes: bool = True) -> dict[str, torch.Tensor]:
        """Sample keyframes, then the full clip around them.

        Returns ``{"keyframes": (b, c, t/s, h, w), "video": (b, c, t, h, w)}``. With
        ``keep_keyframes`` the generated keyframes are written back into the clip at their
        frames (the interpolation model only invents what lies between them).
        """
        k = self.frames // self.stride
        keys = self.diffusion.sample(self.keyframe_model, (batch, channels, k, height, width),
                                     cond=cond, steps=steps, generator=generator, device=device)
        icond = dict(cond or {})
        icond["concat"] = interpolation_condition(keys, self.stride)
        video = self.diffusion.sample(self.interp_model,
                                      (batch, channels, self.frames, height, width),
                                      cond=icond, steps=steps, generator=generator,
                                      device=device)
        if keep_keyframes:
            video = video.clone()
            video[:, :, :: self.stride] = keys
        return {"keyframes": keys, "video": video}


__all__ = ["TemporalDownsample", "TemporalUpsample", "MultiRateTemporalBlock",
           "KeyframeInterpolator", "hierarchy_cost", "keyframe_cost", "hierarchy_frames",
           "keyframe_indices", "interpolation_condition", "check_divisible_frames",
           "DOWN_MODES", "UP_MODES", "MIXERS", "FUSIONS"]
