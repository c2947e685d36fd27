"""Embeddings: diffusion time, positions (1-D / 2-D sin-cos), class labels, attribute vectors.

Conditions that classifier-free guidance can drop carry a learned *null* embedding: where
``keep`` is False the module outputs the null row instead of the real embedding, so one
network learns both p(x | c) and p(x) (CONTRACTS: ``cond[name + "_keep"]``).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0,
                       scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of the diffusion time.

    t: ``(b,)`` float in [0, 1] (a 0-d tensor or python float is broadcast to ``(1,)``).
    Returns ``(b, dim)``: ``[cos(s t f_k), sin(s t f_k)]`` with ``s = 1000`` and
    geometric frequencies ``f_k = max_period^(-k / (dim/2))``. The 1000 scale makes the
    continuous time look like the 0..999 step index the frequencies were designed for
    (otherwise t in [0, 1] only excites the lowest frequencies).
    """
    t = torch.as_tensor(t, dtype=torch.float32)
    if t.ndim == 0:
        t = t[None]
    if t.ndim != 1:
        raise ValueError(f"timestep_embedding: t must have shape (b,), got {tuple(t.shape)}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device,
                                                          dtype=torch.float32) / half)
    args = (t.float() * scale)[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:  # odd width: pad one zero column
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class TimestepMLP(nn.Module):
    """``t (b,) -> (b, out_dim)``: sinusoidal features (``freq_dim``) then Linear-SiLU-Linear."""

    def __init__(self, out_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(),
                                 nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.freq_dim)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


def sincos_1d(positions: int | torch.Tensor, dim: int, max_period: float = 10000.0
              ) -> torch.Tensor:
    """1-D sin-cos position embedding (Transformer style).

    positions: an int ``n`` (positions 0..n-1) or a float tensor ``(n,)``.
    Returns ``(n, dim)`` as ``[sin(p f_k), cos(p f_k)]``; odd ``dim`` is zero-padded.
    """
    if isinstance(positions, int):
        positions = torch.arange(positions, dtype=torch.float32)
    pos = positions.float()
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=pos.device,
                                                          dtype=torch.float32) / max(half, 1))
    args = pos[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """2-D sin-cos position embedding: half the channels encode the row, half the column.

    Returns ``(h * w, dim)`` in row-major "(h w)" order (MAE / DiT / Latte convention).
    """
    if dim % 2:
        raise ValueError(f"sincos_2d: dim must be even, got {dim}")
    rows = torch.arange(h, dtype=torch.float32).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float32).repeat(h)
    return torch.cat([sincos_1d(rows, dim // 2), sincos_1d(cols, dim // 2)], dim=-1)


def check_labels(labels, num_classes: int, name: str = "label") -> None:
    """Host-side range check of class labels (for data loading, where labels are on the CPU).

    Raises ``ValueError`` naming the range when a label is outside ``[0, num_classes)``.
    """
    labels = torch.as_tensor(labels)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"{name}: values must lie in [0, {num_classes - 1}] "
                         f"(num_classes={num_classes}), got "
                         f"[{int(labels.min())}, {int(labels.max())}]")


MAX_TABLE_FRAMES = 64  # rows of the frame-position tables kept as buffers


def table_rows(table: torch.Tensor | None, n: int, dim: int, like: torch.Tensor) -> torch.Tensor:
    """The first ``n`` rows of a ``sincos_1d`` table buffer, in ``like``'s dtype and device.

    Models keep their sin-cos tables as non-persistent buffers (they move with ``.to(device)``
    and stay out of checkpoints) instead of building them on the CPU and copying them to the
    GPU every forward. ``sincos_1d(N, dim)[:n]`` equals ``sincos_1d(n, dim)`` bit for bit (each
    row depends only on its position; tested). Past the table's end, computed on the fly.
    """
    if table is not None and n <= table.shape[0] and table.shape[1] == dim:
        return table[:n].to(dtype=like.dtype)
    return sincos_1d(n, dim).to(device=like.device, dtype=like.dtype)


def _keep_mask(keep: torch.Tensor | None, b: int, name: str, device) -> torch.Tensor | None:
    """Validate a ``(b,)`` bool keep mask (None = keep all)."""
    if keep is None:
        return None
    keep = torch.as_tensor(keep, device=device)
    if keep.shape != (b,) or keep.dtype != torch.bool:
        raise ValueError(f"{name}_keep: expected a bool tensor of shape ({b},), got "
                         f"{keep.dtype} {tuple(keep.shape)}")
    return keep


class LabelEmbedding(nn.Module):
    """Class label -> ``(b, dim)``, with a learned null row at index ``num_classes``.

    ``forward(labels (b,) long, keep (b,) bool | None)``: rows with ``keep == False`` get the
    null embedding (classifier-free guidance drops the label that way).
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, labels: torch.Tensor | None, keep: torch.Tensor | None = None,
                batch: int | None = None) -> torch.Tensor:
        if labels is None:  # no label at all -> every row is the null row
            if batch is None:
                raise ValueError("LabelEmbedding: labels is None and batch size unknown")
            idx = torch.full((batch,), self.num_classes, dtype=torch.long,
                             device=self.table.weight.device)
            return self.table(idx)
        if not torch.is_tensor(labels):  # python ints: checked on the host, for free
            labels = torch.as_tensor(labels)
            check_labels(labels, self.num_classes)
        labels = labels.to(self.table.weight.device)
        if labels.ndim != 1 or labels.dtype not in (torch.long, torch.int, torch.int32):
            raise ValueError(f"label: expected a long tensor of shape (b,), got {labels.dtype} "
                             f"{tuple(labels.shape)}")
        labels = labels.long()
        # A device-side assert, not ``if labels.max() >= n``: reading the values on the host
        # would stall the GPU every step and break the compiled graph. On CPU it raises
        # RuntimeError with this message; data loaders check labels with check_labels.
        torch._assert_async(((labels >= 0) & (labels < self.num_classes)).all(),
                            f"label: values must lie in [0, {self.num_classes - 1}] "
                            f"(num_classes={self.num_classes})")
        keep = _keep_mask(keep, labels.shape[0], "label", labels.device)
        if keep is not None:
            labels = torch.where(keep, labels, torch.full_like(labels, self.num_classes))
        return self.table(labels)


class VectorEmbedding(nn.Module):
    """Attribute / style vector ``(b, vector_dim)`` -> ``(b, dim)`` through a small MLP.

    Rows with ``keep == False`` (or a missing vector) get a learned null embedding.
    """

    def __init__(self, vector_dim: int, dim: int):
        super().__init__()
        self.vector_dim = vector_dim
        self.mlp = nn.Sequential(nn.Linear(vector_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, v: torch.Tensor | None, keep: torch.Tensor | None = None,
                batch: int | None = None) -> torch.Tensor:
        if v is None:
            if batch is None:
                raise ValueError("VectorEmbedding: vector is None and batch size unknown")
            return self.null[None].expand(batch, -1)
        if v.ndim != 2 or v.shape[1] != self.vector_dim:
            raise ValueError(f"vector: expected shape (b, {self.vector_dim}) "
                             f"(vector_dim={self.vector_dim}), got {tuple(v.shape)}")
        emb = self.mlp(v.to(self.null.dtype))
        keep = _keep_mask(keep, v.shape[0], "vector", v.device)
        if keep is not None:
            emb = torch.where(keep[:, None], emb, self.null[None].to(emb.dtype))
        return emb
