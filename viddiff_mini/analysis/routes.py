"""Sections 11.1.5-11.1.6 — the four technical routes, costed, and the cascade's upsamplers.

The book compares four ways to build a video diffusion model:

1. **direct** — one denoiser on the full pixel clip (end to end; the most compute);
2. **cascade** — a small low-frame-rate, low-resolution base model, then a temporal
   upsampler (frame interpolation) and a spatial super-resolution model (divide and
   conquer; errors of the base accumulate through the stages);
3. **latent** — an autoencoder compresses the clip (here 4x in time, 8x in space) and the
   denoiser works on the latent (efficient; quality is capped by the autoencoder);
4. **hybrid** — a pixel-space low-resolution base (motion and layout where pixels are
   cheap) followed by a *latent-space* super-resolution stage (Show-1 style).

:func:`route_costs` turns each route into stages and each stage into FLOPs, parameters and
activation memory with the exact layer counters of ``complexity.py``. The denoiser is a
*schematic* 3-D U-Net (:class:`DenoiserSpec`): it counts the convolutions and attention
blocks of the main path (which dominate), not norms, embeddings or skip-concat widths,
so compare routes with each other, not with a real model's profile to the last percent.

The cascade's upsamplers exist as small modules you can train in seconds:
:func:`temporal_upsample` (the interpolation baseline), :class:`FrameInterpolator`
(learned residual on top of linear blending) and :class:`SpatialUpsampler` (bilinear +
learned refinement); :func:`train_upsampler` trains either on MovingShapes-101 and
:func:`upsampler_error` scores it against its baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from viddiff_mini.analysis.complexity import Cost, attention_cost, conv3d_cost, tensor_bytes
from viddiff_mini.utils import check_video

__all__ = [
    "ROUTES", "DenoiserSpec", "AutoencoderSpec", "denoiser_cost", "autoencoder_cost",
    "route_costs", "compare_routes", "format_routes",
    "temporal_upsample", "FrameInterpolator", "SpatialUpsampler", "cascade_upsample",
    "train_upsampler", "upsampler_error",
]

ROUTES = ("direct", "cascade", "latent", "hybrid")


# =========================================================================== cost models
@dataclass(frozen=True)
class DenoiserSpec:
    """A schematic 3-D U-Net for costing.

    ``in_channels`` -> stem conv -> per level ``i`` (width ``base_channels *
    channel_mults[i]``; each level halves h and w, time is kept): ``res_blocks`` residual
    blocks of two ``conv`` layers, plus one ``attention`` block at the levels in
    ``attn_levels``; a middle of two convs + attention; the decoder mirrors the encoder;
    an output conv back to ``in_channels``.
    """

    base_channels: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4)
    res_blocks: int = 2
    conv: str = "2plus1d"
    attention: str = "divided"
    attn_levels: tuple[int, ...] = (1, 2)
    heads: int = 4
    in_channels: int = 3
    cond_channels: int = 0  # extra input channels (a cascade stage's low-res condition)


@dataclass(frozen=True)
class AutoencoderSpec:
    """A schematic video autoencoder: ``spatial_factor`` (a power of 2) x ``temporal_factor``
    compression to ``latent_channels``. Each resolution stage has two ``conv`` layers of
    width ``channels[stage]`` (encoder down, decoder up)."""

    spatial_factor: int = 8
    temporal_factor: int = 4
    latent_channels: int = 4
    channels: tuple[int, ...] = (64, 128, 256, 256)
    conv: str = "2plus1d"


def _check_pos(**kw) -> None:
    for k, v in kw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{k}: expected a positive int, got {v!r}")


def denoiser_cost(spec: DenoiserSpec, t: int, h: int, w: int) -> Cost:
    """One network evaluation of ``spec`` on a (1, in_channels, t, h, w) input.

    h and w must be divisible by ``2 ** (levels - 1)``. Activations are element counts of
    the tensors a training step keeps for backward (sum over layers) — ``scores`` are the
    attention matrices a non-fused kernel stores (flash attention does not).
    """
    _check_pos(t=t, h=h, w=w)
    levels = len(spec.channel_mults)
    f = 2 ** (levels - 1)
    if h % f or w % f:
        raise ValueError(f"(h, w)=({h}, {w}) must be divisible by 2**(levels-1)={f} for "
                         f"{levels} U-Net levels")
    c0 = spec.base_channels * spec.channel_mults[0]
    cost = conv3d_cost(spec.conv, spec.in_channels + spec.cond_channels, c0, t, h, w)
    c_prev = c0
    for i, mult in enumerate(spec.channel_mults):
        c = spec.base_channels * mult
        hh, ww = h // 2**i, w // 2**i
        block = Cost(0, 0, {})
        for j in range(spec.res_blocks):
            block = block + conv3d_cost(spec.conv, c_prev if j == 0 else c, c, t, hh, ww)
            block = block + conv3d_cost(spec.conv, c, c, t, hh, ww)
        if i in spec.attn_levels and spec.attention != "none":
            block = block + attention_cost(spec.attention, t, hh, ww, c, spec.heads)
        # encoder and mirrored decoder: the same layers twice
        cost = cost + block + block
        c_prev = c
    hb, wb = h // f, w // f
    cost = cost + conv3d_cost(spec.conv, c_prev, c_prev, t, hb, wb) \
        + conv3d_cost(spec.conv, c_prev, c_prev, t, hb, wb)
    if spec.attention != "none":
        cost = cost + attention_cost(spec.attention, t, hb, wb, c_prev, spec.heads)
    return cost + conv3d_cost(spec.conv, c0, spec.in_channels, t, h, w)


def autoencoder_cost(spec: AutoencoderSpec, t: int, h: int, w: int, part: str = "decoder"
                     ) -> Cost:
    """Encoder or decoder cost for a (1, 3, t, h, w) clip (``part``: "encoder" | "decoder")."""
    if part not in ("encoder", "decoder"):
        raise ValueError(f"part: expected 'encoder' or 'decoder', got {part!r}")
    stages = int(math.log2(spec.spatial_factor))
    if 2**stages != spec.spatial_factor or len(spec.channels) < stages + 1:
        raise ValueError(f"spatial_factor={spec.spatial_factor} must be a power of 2 with "
                         f"len(channels) >= log2 + 1 = {stages + 1}")
    cost = Cost(0, 0, {})
    c_in = 3
    for s in range(stages + 1):  # full res, /2, ..., /spatial_factor
        c = spec.channels[s]
        tt = max(1, t // spec.temporal_factor) if s == stages else t
        cost = cost + conv3d_cost(spec.conv, c_in, c, tt, h // 2**s, w // 2**s) \
            + conv3d_cost(spec.conv, c, c, tt, h // 2**s, w // 2**s)
        c_in = c
    # to / from the latent channels (encoder and decoder are mirror images: same count)
    return cost + conv3d_cost(spec.conv, c_in, spec.latent_channels, max(1, t // spec.temporal_factor),
                              h // spec.spatial_factor, w // spec.spatial_factor)


def _stage(name: str, cost: Cost, shape: tuple[int, ...], steps: int, dtype) -> dict:
    scores = cost.activations.get("scores", 0)
    return {"stage": name, "shape": shape, "steps": steps, "flops_per_step": cost.flops,
            "flops": cost.flops * steps, "params": cost.params,
            "activation_bytes": sum(cost.activations.values()) * tensor_bytes((), dtype),
            "attention_score_bytes": scores * tensor_bytes((), dtype)}


def route_costs(route: str, frames: int = 16, size: int = 64, steps: int = 50,
                sr_steps: int = 20, denoiser: DenoiserSpec | None = None,
                autoencoder: AutoencoderSpec | None = None, temporal_factor: int = 2,
                spatial_factor: int = 4, sr_width: float = 0.5,
                dtype: torch.dtype = torch.bfloat16) -> dict:
    """Inference cost of generating one ``frames x size x size`` RGB clip by ``route``.

    Stages (each a denoiser run ``steps`` times, or a decoder run once):

    * direct: denoiser on (3, frames, size, size), ``steps``.
    * cascade: base on (3, frames / temporal_factor, size / spatial_factor) x ``steps``;
      temporal upsampler on (3, frames, size / spatial_factor) conditioned on the base
      (concat, +3 channels) x ``sr_steps``; spatial SR on (3, frames, size) conditioned on
      the upsampled clip x ``sr_steps``. Both SR denoisers have ``sr_width`` x the base
      width and attention only in the middle block.
    * latent: denoiser on the latent (latent_channels, frames / tf_ae, size / sf_ae) x
      ``steps`` + the decoder once.
    * hybrid: pixel base on (3, frames, size / spatial_factor) x ``steps``; latent SR
      denoiser on the full clip's latent conditioned on the base's latent x ``sr_steps``;
      the decoder once.

    Returns ``{"route", "frames", "size", "stages": [dict per stage: stage, shape (c, t,
    h, w), steps, flops_per_step, flops, params, activation_bytes (training activations
    of one step, ``dtype``), attention_score_bytes], "total_flops", "total_params",
    "max_activation_bytes"}``. Training cost per step is ~3x ``flops_per_step``.
    """
    if route not in ROUTES:
        raise ValueError(f"route: expected one of {ROUTES}, got {route!r}")
    _check_pos(frames=frames, size=size, steps=steps, sr_steps=sr_steps,
               temporal_factor=temporal_factor, spatial_factor=spatial_factor)
    den = denoiser or DenoiserSpec()
    ae = autoencoder or AutoencoderSpec()
    if route in ("cascade", "hybrid") and size % spatial_factor:
        raise ValueError(f"size={size} must be divisible by spatial_factor={spatial_factor}")
    if route == "cascade" and frames % temporal_factor:
        raise ValueError(f"frames={frames} must be divisible by temporal_factor="
                         f"{temporal_factor}")
    if route in ("latent", "hybrid") and (size % ae.spatial_factor
                                          or frames % ae.temporal_factor):
        raise ValueError(f"(frames, size)=({frames}, {size}) must be divisible by the "
                         f"autoencoder's (temporal, spatial) factors ({ae.temporal_factor}, "
                         f"{ae.spatial_factor})")
    low = size // spatial_factor
    lt, ls = frames // ae.temporal_factor, size // ae.spatial_factor
    lat = replace(den, in_channels=ae.latent_channels)
    # SR stages: narrower, and attention only in the middle block (Imagen Video's SR
    # models drop spatial attention at high resolution: it would dominate the cost)
    sr = replace(den, base_channels=max(8, int(den.base_channels * sr_width)), attn_levels=())
    stages = []
    if route == "direct":
        stages.append(_stage("denoiser", denoiser_cost(den, frames, size, size),
                             (3, frames, size, size), steps, dtype))
    elif route == "cascade":
        tb = frames // temporal_factor
        stages.append(_stage("base", denoiser_cost(den, tb, low, low), (3, tb, low, low),
                             steps, dtype))
        stages.append(_stage("temporal_sr", denoiser_cost(replace(sr, cond_channels=3),
                                                          frames, low, low),
                             (3, frames, low, low), sr_steps, dtype))
        stages.append(_stage("spatial_sr", denoiser_cost(replace(sr, cond_channels=3),
                                                         frames, size, size),
                             (3, frames, size, size), sr_steps, dtype))
    elif route == "latent":
        stages.append(_stage("latent_denoiser", denoiser_cost(lat, lt, ls, ls),
                             (ae.latent_channels, lt, ls, ls), steps, dtype))
        stages.append(_stage("decoder", autoencoder_cost(ae, frames, size, size),
                             (3, frames, size, size), 1, dtype))
    else:  # hybrid
        stages.append(_stage("pixel_base", denoiser_cost(den, frames, low, low),
                             (3, frames, low, low), steps, dtype))
        lat_sr = replace(sr, in_channels=ae.latent_channels, cond_channels=ae.latent_channels)
        stages.append(_stage("latent_sr", denoiser_cost(lat_sr, lt, ls, ls),
                             (ae.latent_channels, lt, ls, ls), sr_steps, dtype))
        stages.append(_stage("decoder", autoencoder_cost(ae, frames, size, size),
                             (3, frames, size, size), 1, dtype))
    return {"route": route, "frames": frames, "size": size, "stages": stages,
            "total_flops": sum(s["flops"] for s in stages),
            "total_params": sum(s["params"] for s in stages),
            "max_activation_bytes": max(s["activation_bytes"] for s in stages)}


def compare_routes(frames: int = 16, size: int = 64, **kwargs) -> list[dict]:
    """One summary row per route: route, total_flops, total_params, max_activation_bytes,
    stages (names), and ``vs_direct`` (FLOPs relative to the direct route)."""
    rows = [route_costs(r, frames, size, **kwargs) for r in ROUTES]
    direct = rows[0]["total_flops"]
    return [{"route": r["route"], "frames": frames, "size": size,
             "total_flops": r["total_flops"], "total_params": r["total_params"],
             "max_activation_bytes": r["max_activation_bytes"],
             "stages": [s["stage"] for s in r["stages"]],
             "vs_direct": r["total_flops"] / direct} for r in rows]


def format_routes(rows: list[dict]) -> str:
    """A text table of :func:`compare_routes` rows."""
    from viddiff_mini.analysis.complexity import format_bytes, format_flops

    lines = [f"{'route':8s} {'clip':>10s} {'FLOPs/sample':>14s} {'x direct':>9s} "
             f"{'params':>8s} {'activations':>11s}  stages"]
    for r in rows:
        clip = f"{r['frames']}x{r['size']}x{r['size']}"
        lines.append(f"{r['route']:8s} {clip:>10s} {format_flops(r['total_flops']):>14s} "
                     f"{r['vs_direct']:9.3f} {r['total_params'] / 1e6:7.1f}M "
                     f"{format_bytes(r['max_activation_bytes']):>11s}  {' -> '.join(r['stages'])}")
    return "\n".join(lines)


# =========================================================================== upsamplers
def temporal_upsample(video: torch.Tensor, factor: int, method: str = "linear") -> torch.Tensor:
    """The interpolation baseline of a cascade's temporal stage.

    video (b, c, t, h, w) -> (b, c, (t - 1) * factor + 1, h, w): original frames kept at
    0, factor, 2 factor, ...; in between ``"linear"`` blends the two neighbours,
    ``"nearest"`` repeats the closer one (ties: the earlier).
    """
    check_video(video, "video", min_frames=2)
    _check_pos(factor=factor)
    if method not in ("linear", "nearest"):
        raise ValueError(f"method: expected 'linear' or 'nearest', got {method!r}")
    t = video.shape[2]
    pos = torch.arange((t - 1) * factor + 1, device=video.device) / factor  # in input frames
    if method == "nearest":
        return video[:, :, torch.round(pos - 1e-6).long().clamp(0, t - 1)]
    i0 = pos.floor().long().clamp(max=t - 2)
    a = (pos - i0).to(video.dtype)[None, None, :, None, None]
    return (1 - a) * video[:, :, i0] + a * video[:, :, i0 + 1]


def _small_cnn(c_in: int, c_out: int, width: int) -> nn.Sequential:
    """conv-SiLU-conv-SiLU-conv, the last conv zero-initialised (the module starts as its
    baseline: new layers start as identity)."""
    net = nn.Sequential(nn.Conv2d(c_in, width, 3, padding=1), nn.SiLU(),
                        nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
                        nn.Conv2d(width, c_out, 3, padding=1))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class FrameInterpolator(nn.Module):
    """Learned frame interpolation: linear blend + a CNN residual.

    ``forward(f0, f1, a)``: frames (n, c, h, w), ``a`` float or (n,) in [0, 1] -> the frame
    at fraction ``a`` between them, (n, c, h, w). The CNN sees both frames, the blend and
    ``a`` as a constant map; its last layer starts at zero, so an untrained interpolator
    *is* linear blending and training can only start from the baseline.
    """

    def __init__(self, channels: int = 3, width: int = 32):
        super().__init__()
        self.channels = channels
        self.net = _small_cnn(3 * channels + 1, channels, width)

    def forward(self, f0: torch.Tensor, f1: torch.Tensor, a) -> torch.Tensor:
        if f0.shape != f1.shape or f0.ndim != 4 or f0.shape[1] != self.channels:
            raise ValueError(f"f0, f1: expected two (n, {self.channels}, h, w) frames, got "
                             f"{tuple(f0.shape)} and {tuple(f1.shape)}")
        n, _, h, w = f0.shape
        a = torch.as_tensor(a, dtype=f0.dtype, device=f0.device).reshape(-1, 1, 1, 1)
        a = a.expand(n, 1, h, w)
        blend = (1 - a) * f0 + a * f1
        return blend + self.net(torch.cat([f0, f1, blend, a], 1))

    def upsample(self, video: torch.Tensor, factor: int) -> torch.Tensor:
        """(b, c, t, h, w) -> (b, c, (t - 1) factor + 1, h, w), originals kept."""
        check_video(video, "video", channels=self.channels, min_frames=2)
        _check_pos(factor=factor)
        b = video.shape[0]
        f0 = rearrange(video[:, :, :-1], "b c t h w -> (b t) c h w")
        f1 = rearrange(video[:, :, 1:], "b c t h w -> (b t) c h w")
        frames = [f0] + [self(f0, f1, k / factor) for k in range(1, factor)]
        inner = rearrange(torch.stack(frames, 2), "(b t) c k h w -> b c (t k) h w", b=b)
        return torch.cat([inner, video[:, :, -1:]], dim=2)


class SpatialUpsampler(nn.Module):
    """Spatial super-resolution for a cascade: bilinear x ``factor`` + a CNN residual.

    ``forward(video)``: (b, c, t, h, w) -> (b, c, t, factor h, factor w), frame by frame.
    Starts as plain bilinear upsampling (zero-init last layer).
    """

    def __init__(self, factor: int = 2, channels: int = 3, width: int = 32):
        super().__init__()
        _check_pos(factor=factor)
        self.factor, self.channels = factor, channels
        self.net = _small_cnn(channels, channels, width)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        check_video(video, "video", channels=self.channels)
        b = video.shape[0]
        x = rearrange(video, "b c t h w -> (b t) c h w")
        up = F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)
        return rearrange(up + self.net(up), "(b t) c h w -> b c t h w", b=b)


def cascade_upsample(video: torch.Tensor, temporal: FrameInterpolator | int | None = None,
                     spatial: SpatialUpsampler | int | None = None,
                     temporal_factor: int = 2) -> torch.Tensor:
    """Run a base clip (b, c, t, h, w) through the cascade: temporal, then spatial.

    ``temporal``: a :class:`FrameInterpolator` (``temporal_factor`` x) or an int factor for
    the linear baseline; ``spatial``: a :class:`SpatialUpsampler` or an int factor for
    bilinear. None skips the stage.
    """
    check_video(video, "video")
    x = video
    if isinstance(temporal, FrameInterpolator):
        x = temporal.upsample(x, temporal_factor)
    elif temporal is not None:
        x = temporal_upsample(x, temporal)
    if isinstance(spatial, SpatialUpsampler):
        x = spatial(x)
    elif spatial is not None:
        _check_pos(spatial=spatial)
        b = x.shape[0]
        x = rearrange(F.interpolate(rearrange(x, "b c t h w -> (b t) c h w"),
                                    scale_factor=spatial, mode="bilinear", align_corners=False),
                      "(b t) c h w -> b c t h w", b=b)
    return x


def _check_upsampler(model) -> None:
    if not isinstance(model, (FrameInterpolator, SpatialUpsampler)):
        raise ValueError(f"model: expected a FrameInterpolator or SpatialUpsampler, got "
                         f"{type(model).__name__}")


def _pairs(model: nn.Module, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) for an upsampler from full-quality clips (b, c, t, h, w)."""
    if isinstance(model, FrameInterpolator):
        # every other frame is the target, its neighbours the input
        t = video.shape[2] - (1 - video.shape[2] % 2)  # odd number of frames
        v = video[:, :, :t]
        low = v[:, :, ::2]
        return low, v
    if isinstance(model, SpatialUpsampler):
        b = video.shape[0]
        low = F.avg_pool2d(rearrange(video, "b c t h w -> (b t) c h w"), model.factor)
        return rearrange(low, "(b t) c h w -> b c t h w", b=b), video
    raise ValueError(f"model: expected a FrameInterpolator or SpatialUpsampler, got "
                     f"{type(model).__name__}")


def _predict(model: nn.Module, low: torch.Tensor) -> torch.Tensor:
    return model.upsample(low, 2) if isinstance(model, FrameInterpolator) else model(low)


def _baseline(model: nn.Module, low: torch.Tensor) -> torch.Tensor:
    if isinstance(model, FrameInterpolator):
        return temporal_upsample(low, 2)
    return cascade_upsample(low, spatial=model.factor)


def train_upsampler(model: nn.Module, steps: int = 100, batch: int = 8, frames: int = 9,
                    size: int = 32, lr: float = 2e-3, seed: int = 0, fold: int = 1,
                    device=None, progress: bool = False) -> list[float]:
    """Train a :class:`FrameInterpolator` (2x in time) or :class:`SpatialUpsampler` on
    MovingShapes-101 train clips (``frames`` x ``size``); returns the loss per step.

    Targets are the real clips; inputs are derived from them (every other frame / an
    average-pooled copy), the classic way to train a cascade's upsamplers.
    """
    from viddiff_mini.data import synthetic
    from viddiff_mini.utils import tqdm

    _check_pos(steps=steps, batch=batch, frames=frames, size=size)
    _check_upsampler(model)
    device = torch.device(device or next(model.parameters()).device)
    model.to(device).train()
    pool = torch.tensor(synthetic.split_indices("train", fold))
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in tqdm(range(steps), disable=not progress, desc="train upsampler"):
        idx = pool[torch.randint(len(pool), (batch,), generator=g)].tolist()
        video = synthetic.render_batch(idx, frames=frames, size=size, device=device,
                                       seed=int(torch.randint(1 << 30, (1,), generator=g)))["video"]
        low, target = _pairs(model, video)
        loss = F.mse_loss(_predict(model, low), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


@torch.no_grad()
def upsampler_error(model: nn.Module, n: int = 16, frames: int = 9, size: int = 32,
                    seed: int = 0, fold: int = 1) -> dict[str, float]:
    """Mean squared error of the upsampler and of its baseline (linear / bilinear) on
    ``n`` held-out test clips: ``{"model": mse, "baseline": mse}``."""
    from viddiff_mini.data import synthetic

    _check_upsampler(model)
    pool = synthetic.split_indices("test", fold)
    g = torch.Generator().manual_seed(seed)
    idx = [pool[i] for i in torch.randperm(len(pool), generator=g)[:n].tolist()]
    device = next(model.parameters()).device
    video = synthetic.render_batch(idx, frames=frames, size=size, device=device)["video"]
    low, target = _pairs(model, video)
    model.eval()
    return {"model": float(F.mse_loss(_predict(model, low), target)),
            "baseline": float(F.mse_loss(_baseline(model, low), target))}
