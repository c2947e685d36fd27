"""Section 11.2.6: lightweight video models — a 2-D U-Net upgraded to video.

For real-time or mobile use the book's advice is "a shared (image) backbone plus light
temporal modules". This module builds exactly that, in two steps:

1. :class:`UNet2D` (registered ``"unet2d"``): an ordinary image diffusion U-Net (Conv2d,
   per-frame GroupNorm, spatial attention). Given a video ``(b, c, t, h, w)`` it folds the
   frames into the batch, "(b t) c h w", and denoises every frame on its own: the
   *image model applied frame by frame* baseline, with no temporal consistency at all.
2. :class:`VideoFromImage` (registered ``"lightweight"``): the same U-Net with a *motion
   module* after every stage (AnimateDiff / TSM style)::

       stage_i (2-D, per frame)  ->  motion_i (across frames)  ->  stage_{i+1} ...

   ``motion``:

   ============ ================================================================ =========
   kind         motion module                                                    identity
   ============ ================================================================ =========
   shift        gated temporal shift (TSM blended in by a zero-init gate)        yes
   tsm          plain temporal shift (zero parameters, zero FLOPs)               no
   attention    temporal self-attention, zero-init output (AnimateDiff)          yes
   conv         depthwise temporal conv, Dirac-initialised                       yes
   none         nothing (the frame-by-frame image model)                         yes
   ============ ================================================================ =========

   :meth:`VideoFromImage.from_2d` keeps the 2-D weights (a copy) and can freeze them
   (``freeze_2d=True``), so only the motion modules train. With the motion modules at
   identity the video model reproduces the image model frame by frame (tested), which is
   why an upgrade never starts from a broken network.

Both follow the common model contract (CONTRACTS "Models"): ``forward(x, t, cond)`` with
the conditioning keys ``label``, ``context``, ``concat``, ``vector`` (+ ``*_keep``), and a
4-D input runs as images.
"""

from __future__ import annotations

import copy
import math

import torch
from einops import rearrange, repeat
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from ..nn.attention import CrossAttention, SpatialAttention
from ..nn.embeddings import LabelEmbedding, TimestepMLP, VectorEmbedding
from ..nn.propagation import build_temporal
from .conditioning import check_cond, concat_input, context_inputs, time_batch
from .registry import register_model

# motion kind -> nn.propagation kind
MOTION_KINDS = {"shift": "gated_shift", "tsm": "shift", "attention": "attention",
                "conv": "conv", "none": "none"}


def _norm(c: int) -> nn.GroupNorm:
    # GroupNorm over (c/g, h, w) of each frame: an image model's normalisation
    return nn.GroupNorm(math.gcd(32, c), c)


class ResBlock2D(nn.Module):
    """GroupNorm-SiLU-Conv2d, FiLM by the embedding, GroupNorm-SiLU-dropout-Conv2d (zero), skip.

    ``forward(x (B, c_in, h, w), emb (B, emb_dim)) -> (B, c_out, h, w)``.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = _norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = _norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # the residual branch starts at zero
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = rearrange(self.emb(F.silu(emb)), "B (two c) -> two B c 1 1", two=2)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Stage2D(nn.Module):
    """ResBlock2D -> [spatial attention, cross-attention]; frames folded: ``(B, c, h, w)``."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, attention: bool, heads: int,
                 context_dim: int | None, dropout: float):
        super().__init__()
        self.res = ResBlock2D(c_in, c_out, emb_dim, dropout)
        # SpatialAttention works on (B, c, 1, h, w): one frame, attention inside it
        self.attn = SpatialAttention(c_out, heads) if attention else None
        self.cross = CrossAttention(c_out, context_dim, heads) if attention and context_dim \
            else None

    def forward(self, h, emb, context=None, context_mask=None, context_keep=None):
        h = self.res(h, emb)
        if self.attn is not None:
            h = self.attn(h[:, :, None])[:, :, 0]
        if self.cross is not None:
            h = self.cross(h[:, :, None], context, context_mask, context_keep)[:, :, 0]
        return h


@register_model("unet2d")
class UNet2D(nn.Module):
    """2-D U-Net for images; a video input is denoised frame by frame.

    Args (as :class:`~viddiff_mini.models.unet3d.UNet3D` where they overlap):
        in_channels / out_channels, base_channels, channel_mults, num_res_blocks,
        attn_levels (levels with spatial + cross-attention; the middle always has them),
        heads (must divide every level's width), num_classes, context_dim,
        concat_channels, vector_dim, dropout, checkpoint (gradient checkpointing of every
        stage in training), frames / image_size (optional; ``image_size`` is checked for
        divisibility here, ``frames`` is accepted for a uniform model interface).

    ``forward(x (b, c, t, h, w) or (b, c, h, w), t (b,) in [0, 1], cond=None)``; the
    ``motion`` argument of :meth:`forward_frames` is how :class:`VideoFromImage` inserts
    its temporal modules between the stages without this class knowing about them.
    """

    def __init__(self, in_channels: int = 3, out_channels: int | None = None,
                 base_channels: int = 64, channel_mults=(1, 2, 2), num_res_blocks: int = 1,
                 attn_levels=(1, 2), heads: int = 4, num_classes: int | None = None,
                 context_dim: int | None = None, concat_channels: int = 0,
                 vector_dim: int | None = None, dropout: float = 0.0,
                 checkpoint: bool = False, frames: int | None = None, image_size=None):
        super().__init__()
        channel_mults, attn_levels = tuple(channel_mults), tuple(attn_levels)
        if not channel_mults:
            raise ValueError("channel_mults: expected at least one level, got ()")
        bad = [lv for lv in attn_levels if not 0 <= lv < len(channel_mults)]
        if bad:
            raise ValueError(f"attn_levels: levels {bad} out of range for "
                             f"channel_mults={channel_mults} (levels 0..{len(channel_mults) - 1})")
        for level, mult in enumerate(channel_mults):
            width = base_channels * mult
            if not isinstance(heads, int) or heads < 1 or width % heads:
                raise ValueError(f"heads={heads!r} must divide the width of every level: level "
                                 f"{level} has base_channels * {mult} = {width} channels")
        self.config = dict(in_channels=in_channels, out_channels=out_channels,
                           base_channels=base_channels, channel_mults=channel_mults,
                           num_res_blocks=num_res_blocks, attn_levels=attn_levels, heads=heads,
                           num_classes=num_classes, context_dim=context_dim,
                           concat_channels=concat_channels, vector_dim=vector_dim,
                           dropout=dropout, checkpoint=checkpoint, frames=frames,
                           image_size=image_size)
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.num_classes, self.context_dim = num_classes, context_dim
        self.concat_channels, self.vector_dim = concat_channels, vector_dim
        self.checkpoint = checkpoint
        self.levels = len(channel_mults)
        if image_size is not None:
            hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
            self._check_hw(*hw, "image_size")

        emb_dim = 4 * base_channels
        self.time_embed = TimestepMLP(emb_dim, freq_dim=max(32, base_channels))
        self.label_embed = LabelEmbedding(num_classes, emb_dim) if num_classes else None
        self.vector_embed = VectorEmbedding(vector_dim, emb_dim) if vector_dim else None

        stage = dict(heads=heads, context_dim=context_dim, dropout=dropout)
        self.in_conv = nn.Conv2d(in_channels + concat_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch = [base_channels], base_channels
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                self.down.append(Stage2D(ch, base_channels * mult, emb_dim,
                                         attention=level in attn_levels, **stage))
                ch = base_channels * mult
                skips.append(ch)
            if level != self.levels - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid = Stage2D(ch, ch, emb_dim, attention=True, **stage)
        self.mid_res = ResBlock2D(ch, ch, emb_dim, dropout)
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                self.up.append(Stage2D(ch + skips.pop(), base_channels * mult, emb_dim,
                                       attention=level in attn_levels, **stage))
                ch = base_channels * mult
            if level != 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(ch, ch, 3, padding=1)))
        self.out_norm = _norm(ch)
        self.out_conv = nn.Conv2d(ch, self.out_channels, 3, padding=1)
        nn.init.zeros_(self.out_conv.weight)  # the untrained model predicts 0
        nn.init.zeros_(self.out_conv.bias)

    # ------------------------------------------------------------------ helpers
    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def stage_widths(self) -> list[int]:
        """Output channels of every stage in forward order (down, mid, up): where motion
        modules go."""
        return [s.res.conv1.out_channels for s in self.stages()]

    def stages(self) -> list[Stage2D]:
        """All :class:`Stage2D` in forward order: down stages, the middle, up stages."""
        return ([m for m in self.down if isinstance(m, Stage2D)] + [self.mid]
                + [m for m in self.up if isinstance(m, Stage2D)])

    def _check_hw(self, height: int, width: int, where: str) -> None:
        f = 2 ** (self.levels - 1)
        if height % f or width % f:
            raise ValueError(f"{where}: height and width must be divisible by {f} "
                             f"(2 ** (len(channel_mults) - 1)), got {height}x{width}")

    def _run(self, stage: Stage2D, h, emb, ctx):
        if self.checkpoint and self.training and torch.is_grad_enabled():
            return grad_checkpoint(stage, h, emb, *ctx, use_reentrant=False)
        return stage(h, emb, *ctx)

    # ------------------------------------------------------------------ forward
    def forward_frames(self, x: torch.Tensor, t, cond: dict | None = None,
                       motion: list[nn.Module | None] | None = None,
                       features: list | None = None) -> torch.Tensor:
        """The U-Net on frames, with optional temporal modules between the stages.

        x: ``(b, c, t, h, w)`` (or ``(b, c, h, w)``: one frame, returned 4-D). Frames are
        folded into the batch; after stage ``i`` (forward order, see :meth:`stages`)
        ``motion[i]`` (a module ``(b, c, t, h, w) -> same`` or None) mixes the frames.
        ``features`` (a list) collects ``(name, (b, c, t, h, w))`` after every layer.
        Returns ``(b, out_channels, t, h, w)``.
        """
        video = x.ndim == 5
        if x.ndim == 4:
            x = x[:, :, None]
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected (b, {self.in_channels}, t, h, w) or "
                             f"(b, {self.in_channels}, h, w), got {tuple(x.shape)}")
        b, _, frames, height, width = x.shape
        self._check_hw(height, width, "x")
        cond = check_cond(cond, type(self).__name__, self.config)

        emb = self.time_embed(time_batch(t, b, x.device))
        if self.label_embed is not None:
            emb = emb + self.label_embed(cond.get("label"), cond.get("label_keep"), batch=b)
        if self.vector_embed is not None:
            emb = emb + self.vector_embed(cond.get("vector"), cond.get("vector_keep"), batch=b)
        ctx = context_inputs(cond, b, self.context_dim, x.device)
        x = concat_input(x, cond, self.concat_channels)

        # fold frames into the batch: every per-clip input is repeated for each frame
        emb = repeat(emb, "b d -> (b t) d", t=frames)
        ctx = tuple(None if c is None else c.repeat_interleave(frames, dim=0) for c in ctx)
        h = rearrange(x, "b c t h w -> (b t) c h w")

        def video_of(y):
            return rearrange(y, "(b t) c h w -> b c t h w", b=b)

        stage_i = 0

        def after_stage(y, name):
            nonlocal stage_i
            m = motion[stage_i] if motion is not None else None
            stage_i += 1
            if m is not None and video and frames > 1:  # the image path skips motion
                y = rearrange(m(video_of(y)), "b c t h w -> (b t) c h w")
            if features is not None:
                features.append((name, video_of(y)))
            return y

        h = self.in_conv(h)
        if features is not None:
            features.append(("in_conv", video_of(h)))
        skips = [h]
        for i, layer in enumerate(self.down):
            if isinstance(layer, Stage2D):
                h = after_stage(self._run(layer, h, emb, ctx), f"down.{i}")
            else:
                h = layer(h)
                if features is not None:
                    features.append((f"down.{i}", video_of(h)))
            skips.append(h)
        h = self._run(self.mid, h, emb, ctx)
        h = after_stage(self.mid_res(h, emb), "mid")
        for i, layer in enumerate(self.up):
            if isinstance(layer, Stage2D):
                h = after_stage(self._run(layer, torch.cat([h, skips.pop()], dim=1), emb, ctx),
                                f"up.{i}")
            else:
                h = layer(h)
                if features is not None:
                    features.append((f"up.{i}", video_of(h)))
        out = video_of(self.out_conv(F.silu(self.out_norm(h))))
        return out if video else out[:, :, 0]

    def forward(self, x: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        """x: (b, c, t, h, w) (frame by frame) or (b, c, h, w) -> same layout, out_channels."""
        return self.forward_frames(x, t, cond)

    def forward_features(self, x: torch.Tensor, t, cond: dict | None = None,
                         grad: bool = False) -> list[tuple[str, torch.Tensor]]:
        """``[(name, (b, c, t, h, w)), ...]`` after every layer (see UNet3D.forward_features)."""
        feats: list = []
        with torch.set_grad_enabled(grad):
            self.forward_frames(x, t, cond, features=feats)
        return feats


@register_model("lightweight")
class VideoFromImage(nn.Module):
    """A 2-D U-Net plus a motion module after every stage: a lightweight video model.

    Args:
        image_model: a :class:`UNet2D` to upgrade (used as given; :meth:`from_2d` copies).
            ``None``: build a fresh one from ``**unet2d_kwargs`` (training from scratch,
            e.g. ``viddiff train --model lightweight``).
        motion: ``"shift" | "tsm" | "attention" | "conv" | "none"`` (:data:`MOTION_KINDS`).
        motion_levels: U-Net levels (0 = full resolution; the middle counts as the last
            level) that get motion modules; ``None`` = every stage.
        motion_opts: options of the motion module (e.g. ``{"fraction": 1 / 4}`` for shift,
            ``{"causal": True}`` for attention).
        freeze_2d: ``requires_grad=False`` on every image-model parameter (train motion only).
        motion_heads: heads of attention motion modules (default: the image model's
            ``heads``).

    ``forward(x (b, c, t, h, w) or (b, c, h, w), t, cond)``; the state dict holds
    ``image.*`` (exactly the 2-D model's keys) and ``motion.*``.
    """

    def __init__(self, image_model: UNet2D | None = None, motion: str = "shift",
                 motion_levels=None, motion_opts: dict | None = None, freeze_2d: bool = False,
                 motion_heads: int | None = None, **unet2d_kwargs):
        super().__init__()
        if motion not in MOTION_KINDS:
            raise ValueError(f"motion={motion!r} unknown; expected one of {list(MOTION_KINDS)}")
        if image_model is None:
            image_model = UNet2D(**unet2d_kwargs)
        elif unet2d_kwargs:
            raise ValueError(f"VideoFromImage: got an image_model and UNet2D arguments "
                             f"{sorted(unet2d_kwargs)}; pass one or the other")
        if not isinstance(image_model, UNet2D):
            raise ValueError(f"image_model: expected a UNet2D, got {type(image_model).__name__}")
        self.image = image_model
        self.motion_kind = motion
        heads = motion_heads or image_model.config["heads"]
        levels = self._stage_levels()
        wanted = set(range(image_model.levels)) if motion_levels is None else set(motion_levels)
        bad = sorted(wanted - set(range(image_model.levels)))
        if bad:
            raise ValueError(f"motion_levels: levels {bad} out of range "
                             f"(levels 0..{image_model.levels - 1})")
        opts = dict(motion_opts or {})
        self.motion = nn.ModuleList(
            build_temporal(MOTION_KINDS[motion], width, heads, **opts) if level in wanted
            else nn.Identity()
            for width, level in zip(image_model.stage_widths(), levels))
        self.config = dict(image_model.config, motion=motion, motion_levels=motion_levels,
                           motion_opts=motion_opts, freeze_2d=freeze_2d,
                           motion_heads=motion_heads)
        self.freeze_2d = freeze_2d
        if freeze_2d:
            self.image.requires_grad_(False)

    @classmethod
    def from_2d(cls, image_model: UNet2D, motion: str = "shift", freeze_2d: bool = True,
                motion_levels=None, **motion_opts) -> VideoFromImage:
        """Upgrade a (trained) image U-Net: a copy of its weights + new motion modules.

        With ``motion`` in ``shift | attention | conv`` the result reproduces
        ``image_model`` frame by frame until the motion modules are trained.
        ``freeze_2d=True`` keeps the 2-D weights fixed (only ``motion.*`` trains).
        """
        if not isinstance(image_model, UNet2D):
            raise ValueError(f"image_model: expected a UNet2D, got {type(image_model).__name__}")
        return cls(copy.deepcopy(image_model), motion=motion, motion_levels=motion_levels,
                   motion_opts=motion_opts, freeze_2d=freeze_2d)

    def _stage_levels(self) -> list[int]:
        """The U-Net level of each stage in forward order (down, mid, up)."""
        cfg = self.image.config
        n, levels = cfg["num_res_blocks"], self.image.levels
        down = [lv for lv in range(levels) for _ in range(n)]
        up = [lv for lv in reversed(range(levels)) for _ in range(n + 1)]
        return down + [levels - 1] + up

    # proxies so trainers and conditioning helpers see one model
    @property
    def checkpoint(self) -> bool:
        return self.image.checkpoint

    @checkpoint.setter
    def checkpoint(self, value: bool) -> None:
        self.image.checkpoint = value

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def motion_params(self) -> int:
        """Parameters added by the motion modules (the cost of the upgrade)."""
        return sum(p.numel() for p in self.motion.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_2d:  # frozen image weights stay in eval mode (dropout off)
            self.image.eval()
        return self

    def forward(self, x: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        """x: (b, c, t, h, w) or (b, c, h, w); t: (b,) or scalar -> same layout."""
        return self.image.forward_frames(x, t, cond, motion=list(self.motion))

    def forward_features(self, x: torch.Tensor, t, cond: dict | None = None,
                         grad: bool = False) -> list[tuple[str, torch.Tensor]]:
        """``[(name, (b, c, t, h, w)), ...]`` after every layer, motion modules included."""
        feats: list = []
        with torch.set_grad_enabled(grad):
            self.image.forward_frames(x, t, cond, motion=list(self.motion), features=feats)
        return feats


__all__ = ["UNet2D", "VideoFromImage", "MOTION_KINDS", "ResBlock2D", "Stage2D"]
