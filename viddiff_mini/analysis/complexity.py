"""Section 11.1.2 — compute and memory of 5-D video tensors, counted exactly.

Analytic costs (:func:`conv3d_cost`, :func:`attention_cost`) count FLOPs the way
``torch.utils.flop_counter.FlopCounterMode`` does, so the two agree to the last FLOP:

* a convolution or matmul of M multiply-adds counts ``2 M`` FLOPs; biases, norms,
  activations, softmax and elementwise ops count 0;
* attention ``softmax(Q K^T) V`` with Lq queries, Lk keys, head width d counts
  ``2 Lq Lk d`` (scores) + ``2 Lq Lk d`` (weighted sum) per head.

On CPU ``FlopCounterMode`` has no formula for the fused SDPA kernel
(``_scaled_dot_product_flash_attention_for_cpu``: it counts 0), so :func:`measure` runs
attention under the *math* backend (``torch.nn.attention.sdpa_kernel(SDPBackend.MATH)``),
which performs the two batched matmuls visibly; this is what the tests check, for every
kind in ``nn/conv3d.py`` and ``nn/attention.py``. On CUDA the flash / efficient / cuDNN
kernels have registered formulas in ``torch.utils.flop_counter`` (``4 b heads Lq Lk d``,
the same count), so the fast kernels are measured as they are (not verified by this
package's CPU tests).

Memory: :func:`measure` reports peak memory from the CUDA caching allocator on a GPU and,
on CPU, from :class:`LiveTensorBytes`, a ``TorchDispatchMode`` that adds the bytes of every
new tensor storage and subtracts them when the storage is freed (tensors saved for backward
stay counted while autograd holds them — exactly what gradient checkpointing saves).
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["Cost", "tensor_bytes", "conv3d_cost", "attention_cost", "linear_cost",
           "measure", "LiveTensorBytes", "math_sdpa", "format_bytes", "format_flops",
           "training_step_cost"]


# --------------------------------------------------------------------------- sizes
def tensor_bytes(shape, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of a dense tensor: prod(shape) * element size. ``shape``: tuple or torch.Size.

    >>> tensor_bytes((1, 3, 16, 64, 64), torch.float32)   # one 16x64x64 RGB clip
    786432
    """
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"shape: expected non-negative sizes, got {shape}")
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def format_flops(n: float) -> str:
    """2.5e9 -> '2.50 GFLOP'."""
    for unit, s in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6),
                    ("kFLOP", 1e3)):
        if abs(n) >= s:
            return f"{n / s:.2f} {unit}"
    return f"{int(n)} FLOP"


@dataclass
class Cost:
    """Cost of one layer on one input.

    params: parameter count. flops: forward FLOPs as FlopCounterMode counts them.
    activations: element counts of the main tensors of the forward pass (``input``,
    ``output``, and for attention ``qkv`` and ``scores`` — the Lq x Lk matrices a
    non-fused kernel materialises; flash attention avoids storing ``scores``).
    """

    params: int
    flops: int
    activations: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return self.flops // 2

    def activation_bytes(self, dtype: torch.dtype = torch.float32) -> int:
        """Bytes of all listed activations in ``dtype``."""
        return sum(self.activations.values()) * tensor_bytes((), dtype)

    def __add__(self, other: Cost) -> Cost:
        acts = dict(self.activations)
        for k, v in other.activations.items():
            acts[k] = acts.get(k, 0) + v
        return Cost(self.params + other.params, self.flops + other.flops, acts)

    def as_dict(self) -> dict:
        return {"params": self.params, "flops": self.flops, "macs": self.macs,
                **{f"act_{k}": v for k, v in self.activations.items()}}


# --------------------------------------------------------------------------- analytic costs
def _check_dims(**dims) -> None:
    for k, v in dims.items():
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{k}: expected a positive int, got {v!r}")


def linear_cost(n_tokens: int, d_in: int, d_out: int, bias: bool = True) -> Cost:
    """nn.Linear on n tokens: 2 n d_in d_out FLOPs (the bias add is not counted)."""
    return Cost(d_in * d_out + (d_out if bias else 0), 2 * n_tokens * d_in * d_out,
                {"output": n_tokens * d_out})


def conv3d_cost(kind: str, c_in: int, c_out: int, t: int, h: int, w: int, kernel: int = 3,
                batch: int = 1) -> Cost:
    """Exact cost of ``viddiff_mini.nn.conv3d.build_conv(kind, c_in, c_out, kernel)`` on
    an input (batch, c_in, t, h, w) ("same" padding, stride 1).

    per output voxel multiply-adds (V = batch t h w voxels, k = kernel):
    full3d k^3 c_in c_out; 2plus1d k^2 c_in M + k M c_out with M = R(2+1)D's width;
    2plus1d_plain and pseudo3d k^2 c_in c_out + k c_out^2. FLOPs = 2 * MACs * V.
    """
    from viddiff_mini.nn.conv3d import CONV_KINDS, r2plus1d_width

    _check_dims(c_in=c_in, c_out=c_out, t=t, h=h, w=w, kernel=kernel, batch=batch)
    k = kernel
    vox = batch * t * h * w
    acts = {"input": c_in * vox, "output": c_out * vox}
    if kind == "full3d":
        return Cost(k**3 * c_in * c_out + c_out, 2 * k**3 * c_in * c_out * vox, acts)
    if kind in ("2plus1d", "2plus1d_plain"):
        m = c_out if kind == "2plus1d_plain" else r2plus1d_width(c_in, c_out, k)
        params = k**2 * c_in * m + m + k * m * c_out + c_out
        acts["mid"] = m * vox
        return Cost(params, 2 * (k**2 * c_in * m + k * m * c_out) * vox, acts)
    if kind == "pseudo3d":
        params = k**2 * c_in * c_out + c_out + k * c_out * c_out + c_out
        acts["mid"] = c_out * vox
        return Cost(params, 2 * (k**2 * c_in * c_out + k * c_out * c_out) * vox, acts)
    raise ValueError(f"conv kind {kind!r} unknown; expected one of {CONV_KINDS}")


def _attn_block(groups: int, length: int, dim: int, heads: int) -> Cost:
    """One pre-norm attention block over ``groups`` independent sets of ``length`` tokens.

    LayerNorm (2 dim params), qkv Linear (3 dim^2, no bias), proj Linear (dim^2 + dim).
    FLOPs: qkv 2 n dim 3dim + scores 2 g L^2 dim + weighted sum 2 g L^2 dim + proj 2 n dim^2
    (all heads together: heads * (head width) = dim).
    """
    n = groups * length
    flops = 2 * n * dim * 3 * dim + 4 * groups * length * length * dim + 2 * n * dim * dim
    params = 2 * dim + 3 * dim * dim + dim * dim + dim
    acts = {"qkv": 3 * n * dim, "scores": groups * heads * length * length, "output": n * dim}
    return Cost(params, flops, acts)


def attention_cost(kind: str, t: int, h: int, w: int, dim: int, heads: int = 4,
                   batch: int = 1, **opts) -> Cost:
    """Exact cost of ``viddiff_mini.nn.attention.build_attention(kind, dim, heads, **opts)``
    on an input (batch, dim, t, h, w).

    Token sets: full — one set of t h w; spatial — b t sets of h w; temporal — b h w sets
    of t (0 FLOPs when t = 1: the block returns its input); divided — spatial + temporal;
    window — one set per (clipped) window; sparse — dense t h w with a mask (the dense SDPA
    kernel computes every score; :meth:`SparseAttention.density` says what a sparse kernel
    would keep), plus with ``topk_blocks`` the block-routing scores; none — nothing.
    """
    from viddiff_mini.nn.attention import _KIND_OPTS, ATTENTION_KINDS, _as_triple, _check_block

    _check_dims(t=t, h=h, w=w, dim=dim, heads=heads, batch=batch)
    if kind not in _KIND_OPTS:
        raise ValueError(f"attention kind {kind!r} unknown; expected one of {ATTENTION_KINDS}")
    bad = sorted(set(opts) - set(_KIND_OPTS[kind]))
    if bad:  # the same check as build_attention: a silently ignored option is a bug
        raise ValueError(f"attention kind {kind!r} does not take option(s) {bad}; "
                         f"it takes {list(_KIND_OPTS[kind])}")
    if dim % heads:
        raise ValueError(f"heads={heads} must divide dim={dim}")
    n = t * h * w
    acts = {"input": batch * dim * n}
    if kind == "none":
        return Cost(0, 0, acts)
    if kind == "full" or kind == "sparse":
        c = _attn_block(batch, n, dim, heads)
        if kind == "sparse" and opts.get("topk_blocks"):  # routing: mean q . mean k per block
            bt, bh, bw = block = _as_triple(opts.get("block", (1, 4, 4)), "block")
            _check_block(block, (t, h, w))
            blocks = n // (bt * bh * bw)
            c.flops += 2 * batch * blocks * blocks * dim
    elif kind == "spatial":
        c = _attn_block(batch * t, h * w, dim, heads)
    elif kind == "temporal":
        c = _attn_block(batch * h * w, t, dim, heads) if t > 1 else \
            Cost(_attn_block(1, 1, dim, heads).params, 0, {})
    elif kind == "divided":  # causal only changes the mask, not the count
        c = attention_cost("spatial", t, h, w, dim, heads, batch) + \
            attention_cost("temporal", t, h, w, dim, heads, batch)
        c.activations["input"] = batch * dim * n
        return c
    elif kind == "window":
        win = opts.get("window", (2, 4, 4))
        win = (win,) * 3 if isinstance(win, int) else tuple(win)
        wt, wh, ww = (min(s, m) for s, m in zip(win, (t, h, w)))
        if t % wt or h % wh or w % ww:
            raise ValueError(f"window={win} must divide the clip shape (t, h, w)=({t}, {h}, {w})")
        c = _attn_block(batch * (t // wt) * (h // wh) * (w // ww), wt * wh * ww, dim, heads)
    else:  # pragma: no cover - every kind of _KIND_OPTS is handled above
        raise ValueError(f"attention kind {kind!r} has no cost formula")
    c.activations = {"input": batch * dim * n, **c.activations}
    return c


# --------------------------------------------------------------------------- measurement
class LiveTensorBytes(TorchDispatchMode):
    """Track bytes of live tensor storages created inside the mode (CPU or GPU).

    Every op output whose storage is new adds ``storage.nbytes()``; a ``weakref.finalize``
    on the storage subtracts it when the storage is freed (storage Python objects are kept
    alive while C++ — e.g. autograd's saved tensors — still holds them). ``peak`` is the
    maximum of the running total: the peak memory of *tensors created in the block*
    (inputs and parameters that existed before are not counted).
    """

    def __init__(self):
        super().__init__()
        self.current = 0
        self.peak = 0
        self._live: set[int] = set()

    def _free(self, key: int, nbytes: int) -> None:
        if key in self._live:
            self._live.discard(key)
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            st = t.untyped_storage()
            key, nbytes = st.data_ptr(), st.nbytes()
            if nbytes == 0 or key in self._live:
                continue
            self._live.add(key)
            self.current += nbytes
            self.peak = max(self.peak, self.current)
            weakref.finalize(st, self._free, key, nbytes)
        return out


@contextlib.contextmanager
def math_sdpa():
    """Run attention under the math SDPA backend (so FlopCounterMode sees its matmuls)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def measure(module: torch.nn.Module | Callable, x: torch.Tensor, *args, backward: bool = False,
            math_attention: bool | None = None, **kwargs) -> dict:
    """Measured cost of ``module(x, *args, **kwargs)``.

    Returns ``flops`` (FlopCounterMode; forward, plus backward when ``backward=True``),
    ``params`` (of an nn.Module), ``peak_bytes`` (CUDA: allocator peak above the memory in
    use before the call; CPU: :class:`LiveTensorBytes`), ``seconds`` and ``memory_method``.
    ``math_attention`` (default: True on CPU) counts attention under the math backend:
    the fused CPU kernel has no FLOP formula and would count 0.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = x.device
    if math_attention is None:
        math_attention = device.type != "cuda"
    params = sum(p.numel() for p in module.parameters()) if isinstance(module, torch.nn.Module) \
        else 0

    def ctx_attn():
        return math_sdpa() if math_attention else contextlib.nullcontext()

    def run():
        out = module(x, *args, **kwargs)
        if backward:
            o = out if isinstance(out, torch.Tensor) else tree_flatten(out)[0][0]
            o.float().sum().backward()
        return out

    with ctx_attn(), FlopCounterMode(display=False) as fc:
        run()
    flops = fc.get_total_flops()
    if isinstance(module, torch.nn.Module):
        module.zero_grad(set_to_none=True)
    with ctx_attn():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            t0 = time.perf_counter()
            run()
            torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            peak = torch.cuda.max_memory_allocated(device) - base
            method = "cuda allocator (max_memory_allocated)"
        else:
            t0 = time.perf_counter()
            with LiveTensorBytes() as tracker:
                run()
            seconds = time.perf_counter() - t0
            peak = tracker.peak
            method = "live tensor storages (TorchDispatchMode)"
    if isinstance(module, torch.nn.Module):
        module.zero_grad(set_to_none=True)
    return {"flops": int(flops), "params": int(params), "peak_bytes": int(peak),
            "seconds": seconds, "memory_method": method}


def training_step_cost(model: torch.nn.Module, diffusion, x0: torch.Tensor, cond=None,
                       amp: bool = False, checkpoint: bool | None = None, repeats: int = 1,
                       generator_seed: int = 0) -> dict:
    """Peak memory and time of one real training step (loss, backward, optimizer step).

    ``amp=True``: bf16 autocast (on CUDA through ``utils.autocast``; on CPU
    ``torch.autocast("cpu", bfloat16)`` — a demonstration of the mechanics: CPUs without
    bf16 units are often *slower* in bf16). ``checkpoint``: sets ``model.checkpoint``
    when the model has that switch (UNet3D does). Returns ``peak_bytes``, ``seconds``
    (the mean of ``repeats`` steps after one warm-up), ``loss``.
    """
    device = x0.device
    if checkpoint is not None:
        if not hasattr(model, "checkpoint"):
            raise ValueError(f"{type(model).__name__} has no 'checkpoint' switch")
        model.checkpoint = checkpoint
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)

    def ctx():
        if not amp:
            return contextlib.nullcontext()
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def step():
        opt.zero_grad(set_to_none=True)
        g = torch.Generator(device=device).manual_seed(generator_seed)
        with ctx():
            loss = diffusion.loss(model, x0, cond, generator=g)
        loss.backward()
        opt.step()
        return loss.item()

    step()  # warm-up: allocator caches, lazy inits
    opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            loss = step()
        torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - t0) / repeats
        peak = torch.cuda.max_memory_allocated(device) - base
    else:  # time without the tracker (its Python hook per op would distort the timing)
        t0 = time.perf_counter()
        for _ in range(repeats):
            loss = step()
        seconds = (time.perf_counter() - t0) / repeats
        opt.zero_grad(set_to_none=True)
        with LiveTensorBytes() as tracker:
            step()
        peak = tracker.peak
    return {"peak_bytes": int(peak), "seconds": seconds, "loss": loss}
