"""Section 11.2.2: space-time attention for video — full, divided, windowed, sparse.

Every module maps ``(b, c, t, h, w) -> (b, c, t, h, w)`` and **adds its own residual**:
``forward(x) = x + proj(attn(norm(x)))``. The output projection ``proj`` starts at zero,
so a freshly built block is the identity (safe to insert into a pretrained network).

Shared parameter names across kinds — ``norm`` (LayerNorm over channels, per token),
``qkv`` (one Linear to queries, keys and values) and ``proj`` — so a state dict moves
between ``full``, ``window``, ``sparse``, ``spatial`` and ``temporal``; ``divided`` holds a
``spatial.`` and a ``temporal.`` block with those names. The norm is per token (LayerNorm,
not GroupNorm over the clip) so that no statistic leaks from future frames under ``causal``.

Cost for N = t h w tokens of width c (attention scores, per layer and head group):

=========== ====================================== =============================
kind        tokens each query sees                 score multiply-adds ~
=========== ====================================== =============================
full        t h w                                  (t h w)^2 c
divided     h w (spatial) + t (temporal)           t h w (h w + t) c
window      wt wh ww                               t h w (wt wh ww) c
sparse      local cube + global tokens             dense kernel: (t h w)^2 c (*)
            (+ top-k blocks chosen by content)
spatial     h w                                    t (h w)^2 c
temporal    t                                      h w t^2 c
=========== ====================================== =============================

(*) ``sparse`` is implemented with a boolean mask on the dense SDPA: it *shows* the
pattern exactly but computes all N^2 scores; a block-sparse kernel (FlexAttention,
xformers) would spend only the masked-in fraction (:meth:`SparseAttention.density`).

Fast path: ``F.scaled_dot_product_attention`` through :func:`viddiff_mini.nn.sdpa.sdpa`,
which runs a call in batch chunks when it would break the CUDA kernels' grid or 32-bit
index limits (temporal attention over ``b h w`` sequences does). Teaching path: :func:`reference_attention`,
tested equal to SDPA; :func:`return_attention_maps` switches modules to it and records the
attention weights.
"""

from __future__ import annotations

import contextlib
import math

import torch
from einops import rearrange
from torch import nn

from .embeddings import MAX_TABLE_FRAMES, sincos_1d, table_rows
from .sdpa import sdpa

ATTENTION_KINDS = ("full", "divided", "window", "sparse", "spatial", "temporal", "none")


# --------------------------------------------------------------------------- reference path
def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Readable ``softmax(Q K^T / sqrt(d)) V`` that also returns the weights.

    q: ``(..., Lq, d)``, k: ``(..., Lk, d)``, v: ``(..., Lk, dv)``; mask: bool broadcastable
    to ``(..., Lq, Lk)``, True = may attend (SDPA's convention). Returns
    ``(out (..., Lq, dv), weights (..., Lq, Lk))``. For teaching and attention maps;
    hot paths use ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def _attend(module: nn.Module, q, k, v, mask=None, is_causal: bool = False) -> torch.Tensor:
    """SDPA, or the reference path when ``module`` is recording attention maps."""
    record = getattr(module, "_record", None)
    if record is None:  # batch-chunked to the fused kernels' limits (nn/sdpa.py)
        return sdpa(q, k, v, attn_mask=mask, is_causal=is_causal)
    if is_causal:
        lq, lk = q.shape[-2], k.shape[-2]
        mask = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
    out, weights = reference_attention(q, k, v, mask)
    record.append(weights.detach())
    return out


def _check_heads(dim: int, heads: int) -> None:
    if not isinstance(heads, int) or heads < 1 or dim % heads:
        raise ValueError(f"heads={heads!r} must be a positive int dividing dim={dim} "
                         f"(each head gets dim // heads channels)")


def _time_pos(module: nn.Module, t: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Sin-cos embedding of frame indices 0..t-1, ``(t, dim)``, so attention knows frame order.

    Read from the module's ``time_pos`` buffer (on the model's device: no host-to-device
    copy per forward), equal bit for bit to ``sincos_1d(t, dim)``.
    """
    return table_rows(getattr(module, "time_pos", None), t, dim, like)


def _add_time_table(module: nn.Module, dim: int) -> None:
    module.register_buffer("time_pos", sincos_1d(MAX_TABLE_FRAMES, dim), persistent=False)


# --------------------------------------------------------------------------- base block
class _Attention(nn.Module):
    """Pre-norm multi-head self-attention over a token set, zero-init output projection.

    Subclasses decide which tokens see which (the rearranges and masks); this class owns
    ``norm``, ``qkv``, ``proj`` and :meth:`_mix` (tokens ``(B, n, c)`` -> ``(B, n, c)``).
    """

    kind = "?"

    def __init__(self, dim: int, heads: int = 4):
        super().__init__()
        _check_heads(dim, heads)
        self.dim, self.heads = dim, heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)  # zero-init: the block starts as the identity
        nn.init.zeros_(self.proj.bias)
        self._record: list | None = None

    def _mix(self, tokens: torch.Tensor, mask=None, is_causal: bool = False) -> torch.Tensor:
        """tokens: normed ``(B, n, c)`` -> attended and projected ``(B, n, c)``.

        mask: bool ``(n, n)`` (or broadcastable to ``(B, h, n, n)``), or a function of
        ``(q, k)`` returning one: content-adaptive patterns need the queries and keys.
        """
        q, k, v = rearrange(self.qkv(tokens), "B n (three h d) -> three B h n d",
                            three=3, h=self.heads)
        if callable(mask):
            mask = mask(q, k)
        out = _attend(self, q, k, v, mask, is_causal)
        return self.proj(rearrange(out, "B h n d -> B n (h d)"))

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 5 or x.shape[1] != self.dim:
            raise ValueError(f"{type(self).__name__}: expected (b, {self.dim}, t, h, w), "
                             f"got {tuple(x.shape)}")

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run ``x`` through the reference path; ``{name: weights}`` (see return_attention_maps)."""
        return attention_maps(self, x)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, dim={self.dim}, heads={self.heads}"


class SpatialAttention(_Attention):
    """Attention within each frame: tokens "(b t) (h w) c"; maps ``((b t), heads, hw, hw)``."""

    kind = "spatial"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> x + attn(x), same shape."""
        self._check(x)
        b, c, t, h, w = x.shape
        tok = self.norm(rearrange(x, "b c t h w -> (b t) (h w) c"))
        out = self._mix(tok)
        return x + rearrange(out, "(b t) (h w) c -> b c t h w", b=b, h=h)


class TemporalAttention(_Attention):
    """Attention along time at each pixel: tokens "(b h w) t c"; maps ``((b h w), heads, t, t)``.

    A sin-cos frame-index embedding is added to the normed tokens (attention alone is
    permutation-equivariant, so without it the block could not tell frame 2 from frame 7).
    ``causal=True``: frame t attends only to frames <= t. A one-frame clip has no temporal
    context, so the block returns its input (the image path; also what makes
    ``divided`` on one frame equal ``spatial``).
    """

    kind = "temporal"

    def __init__(self, dim: int, heads: int = 4, causal: bool = False):
        super().__init__(dim, heads)
        self.causal = causal
        _add_time_table(self, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> x + attn(x), same shape."""
        self._check(x)
        b, c, t, h, w = x.shape
        if t == 1:
            return x
        tok = self.norm(rearrange(x, "b c t h w -> (b h w) t c"))
        tok = tok + _time_pos(self, t, c, tok)
        out = self._mix(tok, is_causal=self.causal)
        return x + rearrange(out, "(b h w) t c -> b c t h w", b=b, h=h)


class FullAttention(_Attention):
    """Joint space-time attention over all "(t h w)" tokens; maps ``(b, heads, N, N)``.

    Frame-index sin-cos embedding added to every token of a frame. ``causal=True`` masks
    keys of later frames (block-triangular mask over frames).
    """

    kind = "full"

    def __init__(self, dim: int, heads: int = 4, causal: bool = False):
        super().__init__(dim, heads)
        self.causal = causal
        _add_time_table(self, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> x + attn(x), same shape."""
        self._check(x)
        b, c, t, h, w = x.shape
        y = self.norm(rearrange(x, "b c t h w -> b t h w c"))
        y = y + _time_pos(self, t, c, y)[:, None, None]
        mask = None
        if self.causal and t > 1:
            frame = torch.arange(t, device=x.device).repeat_interleave(h * w)
            mask = _frame_causal(frame, frame)  # query frame >= key frame
        out = self._mix(rearrange(y, "b t h w c -> b (t h w) c"), mask)
        return x + rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h)


class DividedAttention(nn.Module):
    """Divided space-time attention (TimeSformer): ``spatial`` then ``temporal`` block.

    Each sub-block adds its own residual: ``y = x + S(x)``, ``out = y + T(y)``. Costs
    ``t h w (h w + t)`` scores instead of ``(t h w)^2``. ``causal`` applies to the temporal
    part (the spatial part only looks inside the current frame).
    """

    kind = "divided"

    def __init__(self, dim: int, heads: int = 4, causal: bool = False):
        super().__init__()
        self.spatial = SpatialAttention(dim, heads)
        self.temporal = TemporalAttention(dim, heads, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> same shape."""
        return self.temporal(self.spatial(x))

    def attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"spatial": ((b t), heads, hw, hw), "temporal": ((b h w), heads, t, t)}``."""
        return attention_maps(self, x)


def _as_triple(value, name: str) -> tuple[int, int, int]:
    if isinstance(value, int):
        value = (value, value, value)
    value = tuple(value)
    if len(value) != 3 or not all(isinstance(v, int) and v > 0 for v in value):
        raise ValueError(f"{name}: expected 3 positive ints (t, h, w), got {value!r}")
    return value


def window_for(window, t: int, h: int, w: int) -> tuple[int, int, int]:
    """The window used on a clip ``(t, h, w)``: ``window`` clipped to the clip, checked.

    A window larger than the clip along an axis covers that axis; otherwise it must divide
    it. Raises ``ValueError`` naming the window and the clip shape. Models call this at
    construction when they know their input shape, so the error comes before any forward.
    """
    window = _as_triple(window, "window")
    win = tuple(min(s, n) for s, n in zip(window, (t, h, w)))
    if any(n % s for s, n in zip(win, (t, h, w))):
        raise ValueError(f"window={window} (clipped to {win}) must divide the clip "
                         f"shape (t, h, w)=({t}, {h}, {w})")
    return win


def _frame_causal(frame_q: torch.Tensor, frame_k: torch.Tensor) -> torch.Tensor:
    """Bool ``(Lq, Lk)``: True where the key's frame is not later than the query's."""
    return frame_q[:, None] >= frame_k[None, :]


class WindowAttention(_Attention):
    """Windowed space-time attention (Video Swin): attention inside ``(wt, wh, ww)`` cubes.

    A window larger than the clip along an axis is clipped to the clip (so a big window is
    ``full``); otherwise the window must divide ``(t, h, w)`` (checked at forward).
    ``shift=True`` rolls the clip by half a window before partitioning (Swin's cyclic
    shift, with the mask that stops tokens wrapped around the border from attending to
    each other), so stacked shifted / unshifted layers pass information across windows.
    ``causal=True``: inside a window a token sees keys of its own and earlier frames only
    (within one un-wrapped region the rolled order is the true frame order).
    Maps: ``((b n_windows), heads, wt wh ww, wt wh ww)``.
    """

    kind = "window"

    def __init__(self, dim: int, heads: int = 4, window=(2, 4, 4), shift: bool = False,
                 causal: bool = False):
        super().__init__(dim, heads)
        _add_time_table(self, dim)
        self.window = _as_triple(window, "window")
        self.shift = bool(shift)
        self.causal = bool(causal)
        self._mask_cache: dict = {}

    def window_for(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """The window actually used for a clip ``(t, h, w)`` (clipped, divisibility checked)."""
        return window_for(self.window, t, h, w)

    def _shift_mask(self, size, win, shifts, device) -> torch.Tensor:
        """Bool ``(n_windows, 1, n, n)``: True where two tokens came from the same region."""
        key = (size, win, shifts, str(device))
        if key not in self._mask_cache:
            labels = []
            for n, s, sh in zip(size, win, shifts):
                lab = torch.zeros(n, dtype=torch.long)
                if sh:  # the regions Swin uses: [0, n-s), [n-s, n-sh), [n-sh, n)
                    lab[n - s:n - sh] = 1
                    lab[n - sh:] = 2
                labels.append(lab)
            lab = (labels[0][:, None, None] * 9 + labels[1][None, :, None] * 3
                   + labels[2][None, None, :])
            lab = rearrange(lab, "(nt wt) (nh wh) (nw ww) -> (nt nh nw) (wt wh ww)",
                            wt=win[0], wh=win[1], ww=win[2])
            self._mask_cache[key] = (lab[:, :, None] == lab[:, None, :])[:, None].to(device)
        return self._mask_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> x + attn(x), same shape."""
        self._check(x)
        b, c, t, h, w = x.shape
        wt, wh, ww = win = self.window_for(t, h, w)
        y = self.norm(rearrange(x, "b c t h w -> b t h w c"))
        y = y + _time_pos(self, t, c, y)[:, None, None]
        shifts = (0, 0, 0)
        if self.shift:  # no shift along an axis the window already covers
            shifts = tuple(s // 2 if s < n else 0 for s, n in zip(win, (t, h, w)))
        if any(shifts):
            y = torch.roll(y, shifts=tuple(-s for s in shifts), dims=(1, 2, 3))
        tok = rearrange(y, "b (nt wt) (nh wh) (nw ww) c -> (b nt nh nw) (wt wh ww) c",
                        wt=wt, wh=wh, ww=ww)
        mask = None
        if any(shifts):
            mask = self._shift_mask((t, h, w), win, shifts, x.device).repeat(b, 1, 1, 1)
        if self.causal and wt > 1:
            frame = torch.arange(wt, device=x.device).repeat_interleave(wh * ww)
            causal = _frame_causal(frame, frame)
            mask = causal if mask is None else mask & causal
        out = self._mix(tok, mask)
        out = rearrange(out, "(b nt nh nw) (wt wh ww) c -> b c (nt wt) (nh wh) (nw ww)",
                        b=b, nt=t // wt, nh=h // wh, wt=wt, wh=wh, ww=ww)
        if any(shifts):
            out = torch.roll(out, shifts=shifts, dims=(2, 3, 4))
        return x + out


def _check_block(block: tuple[int, int, int], grid: tuple[int, int, int]) -> None:
    """A routing block must tile the clip ``grid = (t, h, w)`` exactly."""
    if any(n % s for n, s in zip(grid, block)):
        raise ValueError(f"block={tuple(block)} must divide the clip shape (t, h, w)="
                         f"{tuple(grid)}")


def topk_block_mask(q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int, int],
                    block: tuple[int, int, int], topk: int, causal: bool = False) -> torch.Tensor:
    """Content-adaptive block sparsity: each query block keeps its ``topk`` best key blocks.

    q, k: ``(B, heads, N, d)`` with N = t h w tokens in "(t h w)" order on ``grid``.
    Tokens are grouped into blocks of ``block = (bt, bh, bw)``; a block's summary is its
    mean query / key, and query block ``I`` keeps the ``topk`` key blocks ``J`` with the
    largest ``mean_q(I) . mean_k(J)`` (routing by content, as in MoBA / NSA-style selection).
    ``causal``: later frames' blocks are never selected. Returns bool ``(B, heads, N, N)``.
    The selection is a hard top-k (no gradient through it); the kept scores still train.
    """
    _check_block(block, grid)
    t, h, w = grid
    bt, bh, bw = block
    fold = "B H (nt bt nh bh nw bw) d -> B H (nt nh nw) (bt bh bw) d"
    sizes = dict(nt=t // bt, nh=h // bh, bt=bt, bh=bh, bw=bw)
    qb = rearrange(q, fold, **sizes).mean(-2)           # (B, H, nb, d) block summaries
    kb = rearrange(k, fold, **sizes).mean(-2)
    scores = qb @ kb.transpose(-2, -1)                  # (B, H, nb, nb)
    frame_of_block = torch.arange(t // bt, device=q.device).repeat_interleave(
        (h // bh) * (w // bw))
    if causal:  # never select a key block of a later time step
        scores = scores.masked_fill(~_frame_causal(frame_of_block, frame_of_block),
                                    float("-inf"))
    nb = scores.shape[-1]
    keep = scores.topk(min(topk, nb), dim=-1).indices
    block_mask = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, keep, True)
    # token -> block index in "(t h w)" order, then expand the block mask to tokens
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w),
                                indexing="ij")
    block_of = (((tt // bt) * (h // bh) + hh // bh) * (w // bw) + ww // bw).reshape(-1)
    mask = block_mask[..., block_of[:, None].to(q.device), block_of[None, :].to(q.device)]
    if causal:  # a block spanning several frames must not let its early frames see its later
        frame = tt.reshape(-1).to(q.device)
        mask = mask & _frame_causal(frame, frame)
    return mask


class SparseAttention(_Attention):
    """Sparse space-time attention: a local cube plus global tokens (BigBird-style).

    Token ``i`` may attend to token ``j`` when (a) ``j`` lies within ``local = (rt, rh, rw)``
    frames/rows/columns of ``i`` (a sliding cube, not a fixed block), or (b) ``j`` is a
    *global* token — positions on the grid ``stride = (st, sh, sw)``, a strided summary of
    the whole clip — or ``i`` is one (global tokens see everything). Implemented as a
    boolean mask for SDPA (see the module docstring for its cost). A ``local`` radius that
    covers the clip gives an all-True mask, i.e. ``full`` attention. ``causal=True`` removes
    every key of a later frame (after the local / global rule).

    ``topk_blocks=k`` adds a *content-adaptive* part (:func:`topk_block_mask`): the clip is
    cut into blocks of ``block`` tokens and every query block also sees the ``k`` key
    blocks its mean query scores highest — where the moving object went, not a fixed
    neighbourhood. The pattern then differs per clip and head.
    Maps: ``(b, heads, N, N)``.
    """

    kind = "sparse"

    def __init__(self, dim: int, heads: int = 4, local=(1, 2, 2), stride=(2, 4, 4),
                 causal: bool = False, topk_blocks: int | None = None, block=(1, 4, 4)):
        super().__init__(dim, heads)
        _add_time_table(self, dim)
        self.causal = bool(causal)
        if topk_blocks is not None and (not isinstance(topk_blocks, int) or topk_blocks < 1):
            raise ValueError(f"topk_blocks: expected a positive int or None, got {topk_blocks!r}")
        self.topk_blocks = topk_blocks
        self.block = _as_triple(block, "block")
        self.local = tuple(local) if not isinstance(local, int) else (local,) * 3
        if len(self.local) != 3 or not all(isinstance(r, int) and r >= 0 for r in self.local):
            raise ValueError(f"local: expected 3 non-negative ints (t, h, w), got {local!r}")
        self.stride = _as_triple(stride, "stride")
        self._mask_cache: dict = {}

    def sparse_mask(self, t: int, h: int, w: int, device=None) -> torch.Tensor:
        """Bool ``(N, N)`` with N = t h w in "(t h w)" order; True = may attend."""
        key = (t, h, w, str(device))
        if key not in self._mask_cache:
            # Per-axis masks combined by broadcasting: only the N^2 bool result is stored.
            near = [(torch.arange(n)[:, None] - torch.arange(n)[None]).abs() <= r
                    for n, r in zip((t, h, w), self.local)]
            local = (near[0][:, None, None, :, None, None] & near[1][None, :, None, None, :, None]
                     & near[2][None, None, :, None, None, :]).reshape(t * h * w, t * h * w)
            on_grid = [torch.arange(n) % s == 0 for n, s in zip((t, h, w), self.stride)]
            is_global = (on_grid[0][:, None, None] & on_grid[1][None, :, None]
                         & on_grid[2][None, None, :]).reshape(-1)
            mask = local | is_global[None, :] | is_global[:, None]
            if self.causal:
                frame = torch.arange(t).repeat_interleave(h * w)
                mask = mask & _frame_causal(frame, frame)
            self._mask_cache[key] = mask.to(device)
        return self._mask_cache[key]

    def density(self, t: int, h: int, w: int) -> float:
        """Fraction of the N^2 query-key pairs the pattern keeps (cost of a sparse kernel)."""
        return float(self.sparse_mask(t, h, w).float().mean())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (b, c, t, h, w) -> x + attn(x), same shape."""
        self._check(x)
        b, c, t, h, w = x.shape
        y = self.norm(rearrange(x, "b c t h w -> b t h w c"))
        y = y + _time_pos(self, t, c, y)[:, None, None]
        static = self.sparse_mask(t, h, w, x.device)
        if self.topk_blocks is None:
            mask = static
        else:
            def mask(q, k):  # static pattern | the blocks this clip's content selects
                return static | topk_block_mask(q, k, (t, h, w), self.block, self.topk_blocks,
                                                self.causal)
        out = self._mix(rearrange(y, "b t h w c -> b (t h w) c"), mask)
        return x + rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h)


class NoAttention(nn.Module):
    """``attention="none"``: the identity (for ablations)."""

    kind = "none"

    def __init__(self, dim: int | None = None, heads: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class CrossAttention(nn.Module):
    """Cross-attention from video tokens to condition tokens (text, image patches, ...).

    ``forward(x, context (b, n, context_dim), mask (b, n) bool | None, keep (b,) bool | None)``
    with ``x`` either a video ``(b, dim, t, h, w)`` (every "(t h w)" token is a query) or
    tokens ``(b, L, dim)``; returns ``x + proj(attn)``, same shape. A learned null token
    is always the first key, so a row whose context is dropped (``keep`` False) or fully
    padded attends to the null token only — that is the "unconditional" context of
    classifier-free guidance, and no row ever has zero keys (no NaN). ``proj`` is
    zero-initialised.
    """

    kind = "cross"

    def __init__(self, dim: int, context_dim: int, heads: int = 4):
        super().__init__()
        _check_heads(dim, heads)
        self.dim, self.context_dim, self.heads = dim, context_dim, heads
        self.norm = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(context_dim, 2 * dim, bias=False)
        self.null = nn.Parameter(torch.randn(1, 1, context_dim) * 0.02)
        self.proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self._record: list | None = None

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        video = x.ndim == 5
        if video:
            b, c, t, h, w = x.shape
            tok = rearrange(x, "b c t h w -> b (t h w) c")
        else:
            tok = x
        b, n = context.shape[:2]
        ctx = torch.cat([self.null.expand(b, 1, -1).to(context.dtype), context], dim=1)
        visible = torch.ones(b, n, dtype=torch.bool, device=x.device)
        if mask is not None:
            visible = visible & mask.to(torch.bool)
        if keep is not None:
            visible = visible & keep.to(torch.bool)[:, None]
        # the null token is always visible (``new_ones``, not ``ones_like(visible[:, :1])``:
        # with zero context tokens that slice is empty and the mask would lose its column)
        visible = torch.cat([visible.new_ones(b, 1), visible], dim=1)
        q = rearrange(self.q(self.norm(tok)), "b L (h d) -> b h L d", h=self.heads)
        k, v = rearrange(self.kv(ctx), "b n (two h d) -> two b h n d", two=2, h=self.heads)
        out = _attend(self, q, k, v, visible[:, None, None, :])
        out = self.proj(rearrange(out, "b h L d -> b L (h d)"))
        if video:
            out = rearrange(out, "b (t h w) c -> b c t h w", t=t, h=h)
        return x + out


# --------------------------------------------------------------------------- factory, maps
_KIND_CLASSES = {"full": FullAttention, "divided": DividedAttention, "window": WindowAttention,
                 "sparse": SparseAttention, "spatial": SpatialAttention,
                 "temporal": TemporalAttention, "none": NoAttention}
_KIND_OPTS = {"full": ("causal",), "divided": ("causal",),
              "window": ("window", "shift", "causal"),
              "sparse": ("local", "stride", "causal", "topk_blocks", "block"),
              "spatial": (), "temporal": ("causal",), "none": ()}


def build_attention(kind: str, dim: int, heads: int = 4, **opts) -> nn.Module:
    """A space-time attention block ``(b, c, t, h, w) -> x + attn(x)`` of the given kind.

    kind: one of :data:`ATTENTION_KINDS`. Options: ``causal`` (every kind with a time axis:
    full, divided, window, sparse, temporal), ``window``/``shift`` (window),
    ``local``/``stride``/``topk_blocks``/``block`` (sparse). An option the kind does not
    take raises ``ValueError`` (a silently ignored ``causal=True`` would be a bug).
    """
    if kind not in _KIND_CLASSES:
        raise ValueError(f"attention kind {kind!r} unknown; expected one of {ATTENTION_KINDS}")
    bad = sorted(set(opts) - set(_KIND_OPTS[kind]))
    if bad:
        raise ValueError(f"attention kind {kind!r} does not take option(s) {bad}; "
                         f"it takes {list(_KIND_OPTS[kind])}")
    if kind == "none":
        return NoAttention()
    return _KIND_CLASSES[kind](dim, heads, **opts)


@contextlib.contextmanager
def return_attention_maps(model: nn.Module):
    """Record attention weights of every attention module in ``model`` while inside.

    Yields a dict ``{module name: [weights per call]}`` filled as the model runs; inside,
    modules use :func:`reference_attention` (slow, exact, returns weights) instead of SDPA.
    Any module with a ``_record`` attribute takes part (the attention blocks here, the
    DiT's ``SelfAttention``); :mod:`viddiff_mini.analysis.attention_maps` builds on this.
    """
    maps: dict[str, list[torch.Tensor]] = {}
    modules = [(name, m) for name, m in model.named_modules() if hasattr(m, "_record")]
    for name, m in modules:
        m._record = maps.setdefault(name or getattr(m, "kind", type(m).__name__), [])
    try:
        yield maps
    finally:
        for _, m in modules:
            m._record = None


def attention_maps(module: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``module(x)`` without grad and return ``{name: weights of the last call}``."""
    with torch.no_grad(), return_attention_maps(module) as maps:
        module(x)
    return {name: ws[-1] for name, ws in maps.items() if ws}


__all__ = ["ATTENTION_KINDS", "build_attention", "reference_attention", "return_attention_maps",
           "attention_maps", "window_for", "SpatialAttention", "TemporalAttention",
           "FullAttention", "DividedAttention", "WindowAttention", "SparseAttention", "NoAttention",
           "CrossAttention", "topk_block_mask"]
