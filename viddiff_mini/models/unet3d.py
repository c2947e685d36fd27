"""Section 11.2.1-11.2.3: a 3-D U-Net whose conv, attention and propagation are arguments.

Layout (``channel_mults=(1, 2, 2)``, ``num_res_blocks=1``)::

    x (b, c, t, h, w) [+ concat maps] -> in_conv
    down: level 0: Stage(base)          -> Downsample (h, w halved; t too if temporal_downsample)
          level 1: Stage(2 base)        -> Downsample
          level 2: Stage(2 base)
    mid:  ResBlock, attention, cross-attention, temporal, ResBlock
    up:   mirror, num_res_blocks + 1 stages per level, each eating one skip connection
    out:  GroupNorm-SiLU-conv (zero-init) -> (b, out_channels, t, h, w)

A Stage is ``ResBlock`` (FiLM from the time + condition embedding) -> [space-time
attention from :func:`build_attention`, cross-attention to ``cond["context"]``] at levels
in ``attn_levels`` -> temporal layer from :func:`build_temporal`. Every residual branch
(second conv of a ResBlock, attention and cross-attention output projections, temporal
layers, the output conv) starts at zero / identity, so the untrained network outputs 0
and each block starts as the identity.

Conditioning (``cond`` dict; CONTRACTS "Models"): ``label`` + ``label_keep`` (needs
``num_classes``), ``context`` (b, n, context_dim) + ``context_mask`` (b, n) + ``context_keep``
(needs ``context_dim``), ``concat`` (b, concat_channels, t, h, w) + ``concat_keep`` (needs
``concat_channels``), ``vector`` (b, vector_dim) + ``vector_keep`` (needs ``vector_dim``).
A condition the model was built for but that is absent from ``cond`` counts as dropped
(null label / null vector / null context token / zero maps): that is the unconditional
branch of classifier-free guidance.

Image path: a 4-D input ``(b, c, h, w)`` runs as a one-frame clip with every temporal layer
skipped (temporal attention on one frame is skipped too), and returns ``(b, c_out, h, w)``:
one network co-trains on images and videos (Make-A-Video, VDM).
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from ..nn.attention import CrossAttention, build_attention, window_for
from ..nn.conv3d import build_conv, zero_init_
from ..nn.embeddings import LabelEmbedding, TimestepMLP, VectorEmbedding
from ..nn.hierarchy import check_divisible_frames
from ..nn.propagation import build_temporal
from .conditioning import check_cond, check_fold, concat_input, context_inputs, time_batch
from .registry import register_model


def _norm(c: int) -> nn.GroupNorm:
    # GroupNorm over (c/g, t, h, w): statistics shared by all frames of a clip, which
    # keeps per-frame brightness consistent (a per-frame norm would let it drift).
    return nn.GroupNorm(math.gcd(32, c), c)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, FiLM by the embedding, GroupNorm-SiLU-dropout-conv (zero), skip.

    ``forward(x (b, c_in, t, h, w), emb (b, emb_dim)) -> (b, c_out, t, h, w)``.
    FiLM: ``h = norm(h) * (1 + scale) + shift`` with ``(scale, shift) = Linear(SiLU(emb))``.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, conv: str = "2plus1d",
                 dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = build_conv(conv, c_in, c_out)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = _norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init_(build_conv(conv, c_out, c_out))
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.emb(F.silu(emb)), "b (two c) -> two b c 1 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Stage(nn.Module):
    """ResBlock -> [attention, cross-attention] -> temporal layer (one checkpointable unit)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, *, conv: str, attention: str | None,
                 temporal: str, heads: int, context_dim: int | None, dropout: float,
                 attention_opts: dict, temporal_opts: dict):
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, conv, dropout)
        self.attn = (build_attention(attention, c_out, heads, **attention_opts)
                     if attention is not None else None)
        self.cross = (CrossAttention(c_out, context_dim, heads)
                      if attention is not None and context_dim else None)
        self.temporal = build_temporal(temporal, c_out, heads, **temporal_opts)

    def forward(self, h, emb, context=None, context_mask=None, context_keep=None,
                video: bool = True):
        h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h)
        if self.cross is not None:
            h = self.cross(h, context, context_mask, context_keep)
        if video:  # the image path has no time axis to propagate along
            h = self.temporal(h)
        return h


class Downsample(nn.Module):
    """Strided conv: (b, c, t, h, w) -> (b, c, t, h/2, w/2), or t/2 too when ``temporal``."""

    def __init__(self, c: int, temporal: bool = False):
        super().__init__()
        self.temporal = temporal
        if temporal:
            self.conv = nn.Conv3d(c, c, 3, stride=2, padding=1)
        else:
            self.conv = nn.Conv3d(c, c, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest upsampling (x2 in h, w; and t when ``temporal``) then a conv."""

    def __init__(self, c: int, temporal: bool = False):
        super().__init__()
        self.scale = (2, 2, 2) if temporal else (1, 2, 2)
        k = (3, 3, 3) if temporal else (1, 3, 3)
        self.conv = nn.Conv3d(c, c, k, padding=tuple(i // 2 for i in k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


@register_model("unet3d")
class UNet3D(nn.Module):
    """3-D U-Net for video diffusion; every architectural choice is a named argument.

    Args:
        in_channels / out_channels: video channels (out defaults to in).
        base_channels, channel_mults: width per level is ``base_channels * mult``.
        num_res_blocks: Stages per level on the way down (``+1`` on the way up).
        attn_levels: level indices (0 = full resolution) that get space-time attention
            (and cross-attention when ``context_dim``); the middle block always has them
            unless ``attention="none"``.
        heads: attention heads; must divide every level's width.
        conv: ``"full3d" | "2plus1d" | "2plus1d_plain" | "pseudo3d"`` (nn/conv3d.py), the
            convs of every ResBlock.
        io_conv: the conv kind of the stem (pixels -> features) and the head (features ->
            prediction). Default (None): ``"pseudo3d"`` when ``conv`` is pseudo3d (so a
            clip of identical frames still gives the image model's output at init), else
            ``"full3d"``: both ends are cheap (3 channels on one side) and the head must
            be a plain linear map. A ``2plus1d`` head puts a SiLU and an R(2+1)D
            bottleneck (``r2plus1d_width(ch, 3)``, about 8 channels) right before the
            prediction; measured on the 11.2 ablation (8x16x16, 150 steps) that alone
            doubled the held-out loss (0.42 vs 0.20).
        attention: ``"divided" | "full" | "window" | "sparse" | "spatial" | "temporal" |
            "none"`` (nn/attention.py); ``attention_opts`` (e.g. ``{"window": (2, 4, 4)}``,
            ``{"causal": True}``) are passed to it.
        temporal: ``"attention" | "recurrent" | "bidirectional" | "shift" | "conv" | "none"``
            (nn/propagation.py), after every ResBlock; ``temporal_opts`` passed to it.
        num_classes, context_dim, concat_channels, vector_dim: enable the conditioning keys.
        context_pool: also add the masked mean of the context tokens (projected) to the
            time embedding, as Imagen adds its pooled text embedding: every ResBlock then
            sees the caption through FiLM, not only the cross-attention levels. A dropped
            context (``context_keep`` False, or no tokens) contributes zero.
        concat_fold: ``(ft, fh, fw)``, for a latent model: pixel-aligned maps arrive at the
            clip's resolution and are space-to-depth folded onto the latent grid
            (``concat_channels * ft * fh * fw`` input channels); ``(1, 1, 1)`` in pixel space.
        dropout: inside ResBlocks.
        checkpoint: gradient checkpointing of every Stage in training (memory for compute).
        temporal_downsample: also halve t at each downsampling (t must be divisible by
            ``2 ** (len(channel_mults) - 1)``).
        frames, image_size: optional clip shape the model is meant for (``image_size`` an int
            or ``(h, w)``). When given, every shape rule (spatial and temporal halving, a
            ``window`` that must divide each attention level's clip) is checked here, at
            construction, with the rule named; otherwise at the first forward.

    ``forward(x (b, c, t, h, w) or (b, c, h, w), t (b,) or scalar in [0, 1], cond=None)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int | None = None,
                 base_channels: int = 64, channel_mults=(1, 2, 2), num_res_blocks: int = 1,
                 attn_levels=(1, 2), heads: int = 4, conv: str = "2plus1d",
                 io_conv: str | None = None,
                 attention: str = "divided", temporal: str = "attention",
                 num_classes: int | None = None, context_dim: int | None = None,
                 concat_channels: int = 0, vector_dim: int | None = None,
                 concat_fold=(1, 1, 1), context_pool: bool = False, dropout: float = 0.0, checkpoint: bool = False,
                 temporal_downsample: bool = False, attention_opts: dict | None = None,
                 temporal_opts: dict | None = None, frames: int | None = None,
                 image_size=None):
        super().__init__()
        channel_mults = tuple(channel_mults)
        attn_levels = tuple(attn_levels)
        if not channel_mults:
            raise ValueError("channel_mults: expected at least one level, got ()")
        bad = [lv for lv in attn_levels if not 0 <= lv < len(channel_mults)]
        if bad:
            raise ValueError(f"attn_levels: levels {bad} out of range for "
                             f"channel_mults={channel_mults} (levels 0..{len(channel_mults) - 1})")
        # levels whose blocks split channels into heads: every level for temporal
        # attention, else the attention levels and the middle (the last level)
        head_levels = set(range(len(channel_mults))) if temporal == "attention" else \
            (set(attn_levels) | {len(channel_mults) - 1} if attention != "none" else set())
        for level, mult in enumerate(channel_mults):
            width = base_channels * mult
            if level in head_levels and (not isinstance(heads, int) or heads < 1
                                         or width % heads):
                raise ValueError(f"heads={heads!r} must divide the width of every level with "
                                 f"attention: level {level} has base_channels * {mult} = "
                                 f"{width} channels (each head gets width // heads)")
        self.config = dict(in_channels=in_channels, out_channels=out_channels,
                           base_channels=base_channels, channel_mults=channel_mults,
                           num_res_blocks=num_res_blocks, attn_levels=attn_levels, heads=heads,
                           conv=conv, io_conv=io_conv, attention=attention,
                           temporal=temporal, num_classes=num_classes, context_dim=context_dim,
                           concat_channels=concat_channels, vector_dim=vector_dim,
                           concat_fold=check_fold(concat_fold), context_pool=context_pool,
                           dropout=dropout, checkpoint=checkpoint,
                           temporal_downsample=temporal_downsample,
                           attention_opts=attention_opts, temporal_opts=temporal_opts,
                           frames=frames, image_size=image_size)
        self.in_channels = in_channels
        self.out_channels = out_channels or in_channels
        self.num_classes, self.context_dim = num_classes, context_dim
        self.concat_channels, self.vector_dim = concat_channels, vector_dim
        self.concat_fold = check_fold(concat_fold)
        self.checkpoint = checkpoint
        self.temporal_downsample = temporal_downsample
        self.levels = len(channel_mults)

        emb_dim = 4 * base_channels
        self.time_embed = TimestepMLP(emb_dim, freq_dim=max(32, base_channels))
        self.label_embed = LabelEmbedding(num_classes, emb_dim) if num_classes else None
        self.vector_embed = VectorEmbedding(vector_dim, emb_dim) if vector_dim else None
        if context_pool and not context_dim:
            raise ValueError("context_pool=True needs context_dim (the tokens to pool)")
        self.context_pool = nn.Linear(context_dim, emb_dim) if context_pool else None

        stage = dict(conv=conv, temporal=temporal, heads=heads, context_dim=context_dim,
                     dropout=dropout, attention_opts=dict(attention_opts or {}),
                     temporal_opts=dict(temporal_opts or {}))
        attn_kind = None if attention == "none" else attention
        if attention == "none":  # still validate the kind's options
            build_attention("none", base_channels, heads, **stage["attention_opts"])

        io_conv = io_conv or ("pseudo3d" if conv == "pseudo3d" else "full3d")
        self.in_conv = build_conv(io_conv, in_channels + concat_channels * math.prod(self.concat_fold),
                                  base_channels)
        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(Stage(ch, base_channels * mult, emb_dim,
                                       attention=attn_kind if level in attn_levels else None,
                                       **stage))
                ch = base_channels * mult
                skips.append(ch)
            if level != self.levels - 1:
                self.down.append(Downsample(ch, temporal_downsample))
                skips.append(ch)

        self.mid = Stage(ch, ch, emb_dim, attention=attn_kind, **stage)
        self.mid_res = ResBlock(ch, ch, emb_dim, conv, dropout)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(Stage(ch + skips.pop(), base_channels * mult, emb_dim,
                                     attention=attn_kind if level in attn_levels else None,
                                     **stage))
                ch = base_channels * mult
            if level != 0:
                self.up.append(Upsample(ch, temporal_downsample))

        self.out_norm = _norm(ch)
        self.out_conv = zero_init_(build_conv(io_conv, ch, self.out_channels))

        if frames is not None or image_size is not None:  # shape rules at construction
            hw = (image_size, image_size) if isinstance(image_size, int) else image_size
            height, width = hw if hw is not None else (None, None)
            self._check_shape(frames, height, width, "frames/image_size")
            if attention == "window" and frames is not None and height is not None:
                self._check_windows(frames, height, width)

    # ------------------------------------------------------------------ helpers
    def num_params(self, trainable_only: bool = False) -> int:
        """Number of parameters (all, or only those with ``requires_grad``)."""
        return sum(p.numel() for p in self.parameters()
                   if p.requires_grad or not trainable_only)

    def _check_shape(self, frames: int | None, height: int | None, width: int | None,
                     where: str) -> None:
        """Divisibility rules of this U-Net for a clip shape (None = unknown, skipped)."""
        f = 2 ** (self.levels - 1)
        if height is not None and (height % f or width % f):
            raise ValueError(f"{where}: height and width must be divisible by {f} "
                             f"(2 ** (len(channel_mults) - 1)), got {height}x{width}")
        if self.temporal_downsample and frames is not None:
            check_divisible_frames(frames, f, where,
                                   f"temporal_downsample=True halves the frames "
                                   f"{self.levels - 1} time(s)")

    def _check_windows(self, frames: int, height: int, width: int) -> None:
        """Window attention: the window must divide the clip at every attention level."""
        window = self.config["attention_opts"] or {}
        window = window.get("window", (2, 4, 4))
        levels = sorted(set(self.config["attn_levels"]) | {self.levels - 1})  # + the middle
        for level in levels:
            s = 2 ** level
            t = frames // s if self.temporal_downsample else frames
            try:
                window_for(window, t, height // s, width // s)
            except ValueError as e:
                raise ValueError(f"attention='window' at level {level} (clip {t}x{height // s}"
                                 f"x{width // s}): {e}") from None

    def _pooled_context(self, tokens, mask, keep) -> torch.Tensor:
        """``(b, n, d)`` tokens -> ``(b, emb_dim)``: masked mean, projected; 0 where dropped."""
        w = torch.ones(tokens.shape[:2], device=tokens.device) if mask is None else mask.float()
        mean = (tokens * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)
        out = self.context_pool(mean)
        if keep is not None:
            out = out * keep.to(out.dtype)[:, None]
        return out

    def _run(self, stage: Stage, h, emb, ctx, video):
        if self.checkpoint and self.training and torch.is_grad_enabled():
            return grad_checkpoint(stage, h, emb, *ctx, video, use_reentrant=False)
        return stage(h, emb, *ctx, video)

    # ------------------------------------------------------------------ forward
    def _forward(self, x: torch.Tensor, t, cond: dict | None,
                 features: list | None = None) -> torch.Tensor:
        video = x.ndim == 5
        if x.ndim == 4:
            x = x[:, :, None]
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected (b, {self.in_channels}, t, h, w) or "
                             f"(b, {self.in_channels}, h, w), got {tuple(x.shape)}")
        b, _, frames, height, width = x.shape
        self._check_shape(frames if video else None, height, width, "x")
        if self.temporal_downsample and not video and 2 ** (self.levels - 1) > 1:
            raise ValueError(f"x: temporal_downsample=True needs the number of frames to be "
                             f"divisible by {2 ** (self.levels - 1)}; the image path (1 frame) "
                             f"cannot be halved")
        cond = check_cond(cond, "UNet3D", self.config)

        emb = self.time_embed(time_batch(t, b, x.device))
        if self.label_embed is not None:
            emb = emb + self.label_embed(cond.get("label"), cond.get("label_keep"), batch=b)
        if self.vector_embed is not None:
            emb = emb + self.vector_embed(cond.get("vector"), cond.get("vector_keep"), batch=b)
        ctx = context_inputs(cond, b, self.context_dim, x.device)
        if self.context_pool is not None:
            emb = emb + self._pooled_context(*ctx)
        x = concat_input(x, cond, self.concat_channels, self.concat_fold)

        def keep(name, h):
            if features is not None:
                features.append((name, h))

        h = self.in_conv(x)
        keep("in_conv", h)
        skips = [h]
        for i, layer in enumerate(self.down):
            h = self._run(layer, h, emb, ctx, video) if isinstance(layer, Stage) else layer(h)
            keep(f"down.{i}", h)
            skips.append(h)
        h = self._run(self.mid, h, emb, ctx, video)
        h = self.mid_res(h, emb)
        keep("mid", h)
        for i, layer in enumerate(self.up):
            if isinstance(layer, Stage):
                h = self._run(layer, torch.cat([h, skips.pop()], dim=1), emb, ctx, video)
            else:
                h = layer(h)
            keep(f"up.{i}", h)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return out if video else out[:, :, 0]

    def forward(self, x: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        """x: (b, c, t, h, w) video or (b, c, h, w) image; t: (b,) / scalar in [0, 1].

        Returns (b, out_channels, t, h, w) (or (b, out_channels, h, w) for images).
        """
        return self._forward(x, t, cond)

    def forward_features(self, x: torch.Tensor, t, cond: dict | None = None,
                         grad: bool = False) -> list[tuple[str, torch.Tensor]]:
        """Features after the input conv and every down / mid / up layer, for analysis.

        Returns ``[(name, (b, c_l, t_l, h_l, w_l)), ...]`` in network order (names
        ``in_conv``, ``down.i``, ``mid``, ``up.i``; ``i`` indexes ``self.down`` /
        ``self.up``). ``grad=True`` keeps the autograd graph (gradient receptive fields).
        """
        feats: list = []
        with torch.set_grad_enabled(grad):
            self._forward(x, t, cond, features=feats)
        return feats
