"""Section 11.2.5: a video Diffusion Transformer (DiT, Latte-style), registered as ``"dit"``.

Pipeline for a clip ``x (b, c, t, h, w)`` with ``patch = (pt, ph, pw)``::

    [x ; concat maps] --Conv3d(kernel = stride = patch)--> tokens (b, T, N, d)
        T = t / pt frames of tokens, N = (h / ph) (w / pw) tokens per frame
        pt = 1: per-frame 2-D patches (Latte); pt > 1: tubelets (ViViT)
    + fixed sin-cos position embeddings: 2-D over (h, w) plus 1-D over T
    depth x DiTBlock, each conditioned by adaLN-Zero on c = emb(t) + emb(label) + emb(vector)
        block_type="interleaved": spatial blocks "(b T) N d" alternate with temporal blocks
                                  "(b N) T d" (Latte); attention cost T N (N + T) d
        block_type="joint":       every block attends over all "b (T N) d" tokens;
                                  cost (T N)^2 d
        context_dim: cross-attention to cond["context"] in spatial and joint blocks
    final adaLN + Linear (zero-init) -> unpatchify -> (b, c_out, t, h, w)

adaLN-Zero: each block regresses (shift, scale, gate) for its attention and MLP from ``c``;
the regression layer starts at zero, so every block starts as the identity and the final
(zero-init) layer makes the untrained model predict exactly 0.

Attention runs through ``F.scaled_dot_product_attention``; while
:func:`viddiff_mini.analysis.attention_maps.capture_attention_maps` is active, the
attention modules take the readable reference path and record their weights.

Costs: :func:`dit_cost` gives parameters and FLOPs (FlopCounterMode convention: 2 per
multiply-add of linear layers, convs and attention matmuls), tested equal to the counter
under the math SDPA backend.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint as grad_checkpoint

from ..nn.attention import CrossAttention, reference_attention
from ..nn.embeddings import LabelEmbedding, TimestepMLP, VectorEmbedding, sincos_1d, sincos_2d
from ..nn.sdpa import sdpa
from .conditioning import check_cond, check_fold, concat_input, context_inputs, time_batch
from .registry import register_model

DIT_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"depth": 4, "dim": 64, "heads": 4},
    "S": {"depth": 12, "dim": 384, "heads": 6},
    "B": {"depth": 12, "dim": 768, "heads": 12},
    "L": {"depth": 24, "dim": 1024, "heads": 16},
    "XL": {"depth": 28, "dim": 1152, "heads": 16},
}
BLOCK_TYPES = ("interleaved", "joint")
FREQ_DIM = 256  # sinusoidal features of the diffusion time before the MLP


def _triple(patch, name: str = "patch") -> tuple[int, int, int]:
    if isinstance(patch, int):
        patch = (1, patch, patch)
    patch = tuple(patch)
    if len(patch) != 3 or not all(isinstance(p, int) and p >= 1 for p in patch):
        raise ValueError(f"{name}: expected (pt, ph, pw) positive ints, got {patch!r}")
    return patch


def _size(size) -> dict[str, int]:
    if isinstance(size, str):
        if size not in DIT_SIZES:
            raise ValueError(f"size={size!r} unknown; expected one of {list(DIT_SIZES)} or a "
                             f"dict with depth, dim, heads")
        return dict(DIT_SIZES[size])
    if isinstance(size, dict) and {"depth", "dim", "heads"} <= set(size):
        return {k: int(size[k]) for k in ("depth", "dim", "heads")}
    raise ValueError(f"size: expected a name in {list(DIT_SIZES)} or a dict with depth, dim, "
                     f"heads; got {size!r}")


def _check_clip_shape(frames, image_size, patch) -> None:
    """Construction-time check that a known clip shape is divisible by the patch."""
    if frames is None and image_size is None:
        return
    hw = (image_size, image_size) if isinstance(image_size, int) else image_size
    shape = (frames, *(hw if hw is not None else (None, None)))
    bad = [f"{n}={v} % {p}" for n, v, p in zip("thw", shape, patch) if v is not None and v % p]
    if bad:
        raise ValueError(f"frames/image_size: (t, h, w)={shape} must be divisible by "
                         f"patch={patch} (not: {', '.join(bad)})")


def _check_dims(dim: int, heads: int, depth: int) -> None:
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    if heads < 1 or dim % heads:
        raise ValueError(f"heads={heads} must divide dim={dim} (each head gets dim // heads "
                         f"channels)")
    if dim % 4:
        raise ValueError(f"dim={dim} must be divisible by 4 (the 2-D sin-cos position "
                         f"embedding splits it into rows/columns x sin/cos)")


# --------------------------------------------------------------------------- layers
class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens ``(B, L, d) -> (B, L, d)`` (no residual).

    SDPA on the hot path; with ``_record`` set (attention-map capture) it runs
    :func:`~viddiff_mini.nn.attention.reference_attention` and appends the weights
    ``(B, heads, L, L)``.
    """

    kind = "joint"  # set per block: "spatial" | "temporal" | "joint" (for attention maps)

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self._record: list | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "B L (three h d) -> three B h L d", three=3,
                            h=self.heads)
        if self._record is None:
            out = sdpa(q, k, v)  # batch-chunked to the fused kernels' limits
        else:
            out, weights = reference_attention(q, k, v)
            self._record.append(weights.detach())
        return self.proj(rearrange(out, "B h L d -> B L (h d)"))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    # x (b, T, N, d); shift/scale (b, d): one modulation per clip, shared by all its tokens
    return x * (1 + scale[:, None, None]) + shift[:, None, None]


class DiTBlock(nn.Module):
    """One transformer block on tokens ``(b, T, N, d) -> (b, T, N, d)``, adaLN-Zero.

    ``mode`` says which tokens attend to each other: ``"spatial"`` (within a frame,
    "(b T) N d"), ``"temporal"`` (same patch across frames, "(b N) T d") or ``"joint"``
    (all, "b (T N) d"). Cross-attention to the context (spatial and joint blocks; a
    query's cross-attention does not depend on its neighbours, so it runs on all tokens
    of the clip at once).
    """

    def __init__(self, dim: int, heads: int, mode: str, mlp_ratio: float = 4.0,
                 context_dim: int | None = None):
        super().__init__()
        if mode not in ("spatial", "temporal", "joint"):
            raise ValueError(f"DiTBlock: mode={mode!r}; expected spatial, temporal or joint")
        self.mode = mode
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads)
        self.attn.kind = mode  # which axis its maps cover (analysis.attention_maps reads it)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, dim))
        self.cross = (CrossAttention(dim, context_dim, heads)
                      if context_dim and mode != "temporal" else None)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.ada[1].weight)  # adaLN-Zero: gates start at 0 -> identity block
        nn.init.zeros_(self.ada[1].bias)

    def _attend(self, h: torch.Tensor) -> torch.Tensor:
        b, T, N, d = h.shape
        if self.mode == "spatial":
            out = self.attn(rearrange(h, "b T N d -> (b T) N d"))
            return rearrange(out, "(b T) N d -> b T N d", b=b)
        if self.mode == "temporal":
            out = self.attn(rearrange(h, "b T N d -> (b N) T d"))
            return rearrange(out, "(b N) T d -> b T N d", b=b)
        out = self.attn(rearrange(h, "b T N d -> b (T N) d"))
        return rearrange(out, "b (T N) d -> b T N d", T=T)

    def forward(self, x: torch.Tensor, c: torch.Tensor, context=None, context_mask=None,
                context_keep=None) -> torch.Tensor:
        """x: (b, T, N, d) tokens; c: (b, d) conditioning -> (b, T, N, d)."""
        s_msa, sc_msa, g_msa, s_mlp, sc_mlp, g_mlp = self.ada(c).chunk(6, dim=-1)
        x = x + g_msa[:, None, None] * self._attend(_modulate(self.norm1(x), s_msa, sc_msa))
        if self.cross is not None and context is not None:
            T = x.shape[1]
            tok = self.cross(rearrange(x, "b T N d -> b (T N) d"), context, context_mask,
                             context_keep)
            x = rearrange(tok, "b (T N) d -> b T N d", T=T)
        return x + g_mlp[:, None, None] * self.mlp(_modulate(self.norm2(x), s_mlp, sc_mlp))


class FinalLayer(nn.Module):
    """adaLN + Linear to ``pt ph pw c_out`` values per token; all zero-init (predicts 0)."""

    def __init__(self, dim: int, out_per_token: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out_per_token)
        for layer in (self.ada[1], self.linear):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(_modulate(self.norm(x), shift, scale))


# --------------------------------------------------------------------------- the model
@register_model("dit")
class VideoDiT(nn.Module):
    """Video DiT: ``forward(x (b, c, t, h, w), t (b,) in [0, 1], cond=None) -> (b, c_out, t, h, w)``.

    Args:
        in_channels / out_channels: video channels (out defaults to in).
        size: ``"tiny" | "S" | "B"`` (:data:`DIT_SIZES`) or a dict; ``depth``, ``dim``,
            ``heads`` override it one by one.
        patch: ``(pt, ph, pw)`` (an int ``p`` means ``(1, p, p)``); ``t, h, w`` must be
            divisible by it.
        block_type: ``"interleaved"`` (spatial / temporal blocks alternate, Latte) or
            ``"joint"`` (full space-time attention in every block).
        mlp_ratio: MLP width / dim.
        num_classes, context_dim, concat_channels, vector_dim: conditioning keys.
        concat_fold: ``(ft, fh, fw)``: a latent model's space-to-depth fold of pixel-aligned
            maps given at the clip's resolution (see ``models/conditioning.concat_input``).
        checkpoint: gradient checkpointing of every block in training.
        frames, image_size: optional clip shape the model is meant for (``image_size`` an
            int or ``(h, w)``); when given, divisibility by ``patch`` is checked here, at
            construction, instead of at the first forward.

    A 4-D input ``(b, c, h, w)`` runs as a one-frame clip (needs ``pt == 1``) and returns
    ``(b, c_out, h, w)``.
    """

    def __init__(self, in_channels: int = 3, out_channels: int | None = None,
                 size: str | dict = "S", depth: int | None = None, dim: int | None = None,
                 heads: int | None = None, patch=(1, 2, 2), block_type: str = "interleaved",
                 mlp_ratio: float = 4.0, num_classes: int | None = None,
                 context_dim: int | None = None, concat_channels: int = 0,
                 vector_dim: int | None = None, concat_fold=(1, 1, 1),
                 checkpoint: bool = False, frames: int | None = None, image_size=None):
        super().__init__()
        s = _size(size)
        depth = s["depth"] if depth is None else depth
        dim = s["dim"] if dim is None else dim
        heads = s["heads"] if heads is None else heads
        _check_dims(dim, heads, depth)
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type={block_type!r}; expected one of {BLOCK_TYPES}")
        self.patch = _triple(patch)
        _check_clip_shape(frames, image_size, self.patch)
        self.config = dict(in_channels=in_channels, out_channels=out_channels, depth=depth,
                           dim=dim, heads=heads, patch=self.patch, block_type=block_type,
                           mlp_ratio=mlp_ratio, num_classes=num_classes,
                           context_dim=context_dim, concat_channels=concat_channels,
                           vector_dim=vector_dim, concat_fold=check_fold(concat_fold),
                           checkpoint=checkpoint, frames=frames,
                           image_size=image_size)
        self.in_channels, self.out_channels = in_channels, out_channels or in_channels
        self.depth, self.dim, self.heads, self.block_type = depth, dim, heads, block_type
        self.num_classes, self.context_dim = num_classes, context_dim
        self.concat_channels, self.vector_dim = concat_channels, vector_dim
        self.concat_fold = check_fold(concat_fold)
        self.checkpoint = checkpoint

        self.patch_embed = nn.Conv3d(in_channels + concat_channels * math.prod(self.concat_fold),
                                     dim, self.patch,
                                     stride=self.patch)
        self.time_embed = TimestepMLP(dim, freq_dim=FREQ_DIM)
        self.label_embed = LabelEmbedding(num_classes, dim) if num_classes else None
        self.vector_embed = VectorEmbedding(vector_dim, dim) if vector_dim else None
        modes = (["spatial", "temporal"] * depth)[:depth] if block_type == "interleaved" \
            else ["joint"] * depth
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, m, mlp_ratio, context_dim)
                                    for m in modes)
        pt, ph, pw = self.patch
        self.final = FinalLayer(dim, pt * ph * pw * self.out_channels)
        # fixed sin-cos tables as non-persistent buffers: on the model's device, not in the
        # state dict; sized for the clip shape when given (else up to 64 x 32 x 32 tokens)
        hw = (image_size, image_size) if isinstance(image_size, int) else image_size
        T_max = -(-frames // pt) if frames else 64
        H_max, W_max = (-(-hw[0] // ph), -(-hw[1] // pw)) if hw else (32, 32)
        self.register_buffer("pos_time", sincos_1d(T_max, dim), persistent=False)
        self.register_buffer("pos_space", sincos_2d(H_max, W_max, dim).reshape(H_max, W_max, dim),
                             persistent=False)

    # ------------------------------------------------------------------ helpers
    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def _check_input(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        video = x.ndim == 5
        if x.ndim == 4:
            if self.patch[0] != 1:
                raise ValueError(f"x: the image path (4-D input) needs patch[0] == 1, this "
                                 f"VideoDiT has patch={self.patch}")
            x = x[:, :, None]
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x: expected (b, {self.in_channels}, t, h, w) or "
                             f"(b, {self.in_channels}, h, w), got {tuple(x.shape)}")
        bad = [f"{n}={s} % {p}" for n, s, p in zip("thw", x.shape[2:], self.patch) if s % p]
        if bad:
            raise ValueError(f"x: (t, h, w)={tuple(x.shape[2:])} must be divisible by "
                             f"patch={self.patch} (not: {', '.join(bad)})")
        return x, video

    def _pos(self, T: int, H: int, W: int, like: torch.Tensor) -> torch.Tensor:
        """Fixed sin-cos position embedding ``(T, H W, d)``: 2-D space plus 1-D time.

        Sliced from the ``pos_time`` / ``pos_space`` buffers (equal bit for bit to
        ``sincos_1d(T)`` / ``sincos_2d(H, W)``); a clip larger than them is computed here.
        """
        if T <= self.pos_time.shape[0] and H <= self.pos_space.shape[0] \
                and W <= self.pos_space.shape[1]:
            space = self.pos_space[:H, :W].reshape(H * W, self.dim)
            time = self.pos_time[:T]
        else:
            space = sincos_2d(H, W, self.dim).to(like.device)
            time = sincos_1d(T, self.dim).to(like.device)
        return (time[:, None] + space[None]).to(dtype=like.dtype)

    def _run(self, block: DiTBlock, tok, c, ctx):
        if self.checkpoint and self.training and torch.is_grad_enabled():
            return grad_checkpoint(block, tok, c, *ctx, use_reentrant=False)
        return block(tok, c, *ctx)

    def _forward(self, x, t, cond, features: list | None = None) -> torch.Tensor:
        x, video = self._check_input(x)
        b, _, frames, height, width = x.shape
        cond = check_cond(cond, "VideoDiT", self.config)
        c = self.time_embed(time_batch(t, b, x.device))
        if self.label_embed is not None:
            c = c + self.label_embed(cond.get("label"), cond.get("label_keep"), batch=b)
        if self.vector_embed is not None:
            c = c + self.vector_embed(cond.get("vector"), cond.get("vector_keep"), batch=b)
        ctx = context_inputs(cond, b, self.context_dim, x.device)
        x = concat_input(x, cond, self.concat_channels, self.concat_fold)

        tok = self.patch_embed(x)  # (b, d, T, H, W)
        T, H, W = tok.shape[2:]
        tok = rearrange(tok, "b d T H W -> b T (H W) d")
        tok = tok + self._pos(T, H, W, tok)
        for block in self.blocks:
            tok = self._run(block, tok, c, ctx)
            if features is not None:
                features.append(rearrange(tok, "b T (H W) d -> b d T H W", H=H))
        out = self.final(tok, c)
        pt, ph, pw = self.patch
        out = rearrange(out, "b T (H W) (pt ph pw c) -> b c (T pt) (H ph) (W pw)",
                        H=H, pt=pt, ph=ph, pw=pw)
        return out if video else out[:, :, 0]

    def forward(self, x: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        """x: (b, c, t, h, w) or (b, c, h, w); t: (b,) or scalar in [0, 1] -> same layout."""
        return self._forward(x, t, cond)

    def forward_features(self, x: torch.Tensor, t, cond: dict | None = None, grad: bool = False
                         ) -> list[tuple[str, torch.Tensor]]:
        """Token features after each block as videos ``(b, d, T, H, W)``, for analysis.

        ``grad=True`` keeps the graph (for gradient-based receptive fields); the default
        runs without autograd.
        """
        feats: list[torch.Tensor] = []
        with torch.set_grad_enabled(grad):
            self._forward(x, t, cond, features=feats)
        return [(f"blocks.{i}.{blk.mode}", f) for i, (blk, f) in enumerate(zip(self.blocks, feats))]


# --------------------------------------------------------------------------- costs
def dit_cost(size: str | dict = "S", t: int = 16, h: int = 64, w: int = 64, patch=(1, 2, 2),
             in_channels: int = 3, out_channels: int | None = None,
             block_type: str = "interleaved", mlp_ratio: float = 4.0,
             num_classes: int | None = None, vector_dim: int | None = None,
             concat_channels: int = 0, context_dim: int | None = None, context_len: int = 0,
             batch: int = 1) -> dict:
    """Parameters and FLOPs of one forward pass of :class:`VideoDiT`, by formula.

    FLOPs use the ``FlopCounterMode`` convention (2 per multiply-add of linear layers,
    convs and attention matmuls ``Q K^T`` and ``A V``; norms, activations and element-wise
    ops are free) and equal what the counter measures under the math SDPA backend.
    ``context_len`` is the number of context tokens (a learned null token is added).

    Returns ``{"params", "flops", "tokens", "tokens_per_frame", "frames_of_tokens",
    "breakdown": {"embed", "attention_proj", "attention_scores", "mlp", "cross",
    "adaLN", "final"}}``.
    """
    s = _size(size)
    depth, d, heads = s["depth"], s["dim"], s["heads"]
    _check_dims(d, heads, depth)
    pt, ph, pw = _triple(patch)
    if t % pt or h % ph or w % pw:
        raise ValueError(f"dit_cost: (t, h, w)=({t}, {h}, {w}) must be divisible by "
                         f"patch={(pt, ph, pw)}")
    c_out = out_channels or in_channels
    T, N = t // pt, (h // ph) * (w // pw)
    L = T * N
    P = pt * ph * pw
    hidden = int(d * mlp_ratio)
    B = batch

    params = (in_channels + concat_channels) * P * d + d  # patch embed
    params += FREQ_DIM * d + d + d * d + d  # timestep MLP
    if num_classes:
        params += (num_classes + 1) * d
    if vector_dim:
        params += vector_dim * d + d + d * d + d + d
    fl = {"embed": 2 * B * L * d * (in_channels + concat_channels) * P
               + 2 * B * (FREQ_DIM * d + d * d)
               + (2 * B * (vector_dim * d + d * d) if vector_dim else 0),
          "attention_proj": 0, "attention_scores": 0, "mlp": 0, "cross": 0, "adaLN": 0}
    modes = (["spatial", "temporal"] * depth)[:depth] if block_type == "interleaved" \
        else ["joint"] * depth
    for mode in modes:
        params += d * 6 * d + 6 * d  # adaLN
        params += d * 3 * d + 3 * d + d * d + d  # qkv, proj
        params += d * hidden + hidden + hidden * d + d  # MLP
        fl["adaLN"] += 2 * B * d * 6 * d
        fl["attention_proj"] += 2 * B * L * d * 4 * d
        group, seq = {"spatial": (T, N), "temporal": (N, T), "joint": (1, L)}[mode]
        fl["attention_scores"] += 4 * B * group * seq * seq * d
        fl["mlp"] += 2 * B * L * d * hidden * 2
        if context_dim and mode != "temporal":
            n_ctx = context_len + 1  # + the learned null token
            params += 2 * d + d * d + context_dim * 2 * d + context_dim + d * d + d
            fl["cross"] += (2 * B * L * d * d + 2 * B * n_ctx * context_dim * 2 * d
                            + 4 * B * L * n_ctx * d + 2 * B * L * d * d)
    params += d * 2 * d + 2 * d + d * P * c_out + P * c_out  # final layer
    fl["final"] = 2 * B * d * 2 * d + 2 * B * L * d * P * c_out
    return {"params": params, "flops": sum(fl.values()), "tokens": L,
            "tokens_per_frame": N, "frames_of_tokens": T, "breakdown": fl}


def dit_size_table(t: int = 16, h: int = 64, w: int = 64, patch=(1, 2, 2),
                   block_type: str = "interleaved", sizes=None, **kwargs) -> list[dict]:
    """Parameters and forward FLOPs of every named size on one clip (scaling at a glance).

    Returns one dict per size: ``{"size", "depth", "dim", "heads", "params", "flops",
    "tokens", "attention_share"}`` (``attention_share`` = score FLOPs / all FLOPs: how
    much of the cost is the quadratic part). ``kwargs`` go to :func:`dit_cost`.
    """
    rows = []
    for name in sizes or DIT_SIZES:
        c = dit_cost(name, t, h, w, patch=patch, block_type=block_type, **kwargs)
        rows.append({"size": name, **_size(name), "params": c["params"], "flops": c["flops"],
                     "tokens": c["tokens"],
                     "attention_share": c["breakdown"]["attention_scores"] / c["flops"]})
    return rows


__all__ = ["VideoDiT", "DiTBlock", "SelfAttention", "FinalLayer", "DIT_SIZES", "BLOCK_TYPES",
           "dit_cost", "dit_size_table"]
