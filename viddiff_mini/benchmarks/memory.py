"""``viddiff bench memory``: peak training memory of a preset, estimated without a GPU.

The model runs one forward of the trainer's loss under ``FakeTensorMode`` (tensors with
shapes and dtypes but no data: seconds on a CPU, nothing allocated) and bf16 autocast, with
a ``saved_tensors_hooks`` pack hook that records every tensor autograd keeps for the
backward pass (deduplicated by storage, parameters excluded). The estimate adds up:

* **static**: fp32 parameters (4 B each), gradients (4 B), AdamW's two moments (8 B), the
  EMA copy (4 B) and autocast's bf16 weight copies (2 B): 22 B per parameter;
* **saved activations** of the forward (the measured figure above), at the batch;
* **recompute peak** with gradient checkpointing: the checkpointed units (U-Net stages, DiT
  blocks) keep only their inputs, and the backward re-runs one unit at a time, so the
  largest unit's own activations come back once (measured per unit without checkpointing);
* **transient**: twice the largest single saved tensor (an op's output gradient and its
  input gradient alive at once in the backward);
* a **10% margin** on the activation terms for allocator fragmentation.

Activation terms are linear in the batch (every layer is per-sample), so two fake runs (batch
1 and 2) give the per-clip slope and :func:`largest_batch` the biggest batch that fits a
budget. What it does not count: the CUDA context (~0.5 GiB, outside the allocator), cuDNN /
cuBLAS workspaces, DDP's gradient buckets (another 4 B per parameter per rank), and the
difference between CPU and CUDA autocast op lists (both run convs, matmuls and attention in
bf16 and norms in fp32). A real GPU's ``torch.cuda.max_memory_allocated`` is the check.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from viddiff_mini.config import TrainConfig

GIB = 2**30
STATIC_BYTES_PER_PARAM = 4 + 4 + 8 + 4 + 2   # param, grad, AdamW m and v, EMA, bf16 cast
MARGIN = 0.10
# usable budgets: 80% of the card's memory (headroom for context, workspaces, fragmentation)
CARDS = {"H100 80GB": 80e9 / GIB, "H200 141GB": 141e9 / GIB}
HEADROOM = 0.80


def _units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules the model checkpoints one by one (``checkpoint=True``)."""
    from viddiff_mini.models.unet3d import Stage

    if hasattr(model, "blocks"):         # DiT
        return list(model.blocks)
    return [m for m in model.modules() if isinstance(m, Stage)]


def saved_activations(cfg: TrainConfig, batch: int) -> dict:
    """Bytes autograd saves in one training forward of ``cfg``'s model at ``batch`` (fake).

    Returns ``{"params", "saved_bytes", "largest_tensor_bytes", "largest_unit_bytes"}``;
    ``largest_unit_bytes`` is measured with checkpointing off (what one unit's recompute
    brings back), whatever ``cfg.grad_checkpoint`` says.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.multiprocessing.reductions import StorageWeakRef

    from viddiff_mini.train import build_model_for, diffusion_loss, make_diffusion

    def run(c: TrainConfig) -> dict:
        with FakeTensorMode():
            torch.manual_seed(c.seed)
            model = build_model_for(c)
            model.train()
            params = {StorageWeakRef(p.untyped_storage()) for p in model.parameters()}
            current: list = [None]
            per_unit: dict[int, int] = {}
            for i, unit in enumerate(_units(model)):
                unit.register_forward_pre_hook(lambda m, a, i=i: current.__setitem__(0, i))
                unit.register_forward_hook(lambda m, a, o: current.__setitem__(0, None))
            seen: dict = {}

            def pack(t):
                ref = StorageWeakRef(t.untyped_storage())
                if ref not in params and ref not in seen:
                    seen[ref] = t.untyped_storage().nbytes()
                    if current[0] is not None:
                        per_unit[current[0]] = per_unit.get(current[0], 0) + seen[ref]
                return t

            b = c.batch_size
            x0 = torch.empty(b, c.model_kwargs.get("in_channels", 3), c.frames, c.size, c.size)
            cond = {"label": torch.zeros(b, dtype=torch.long),
                    "label_keep": torch.ones(b, dtype=torch.bool)}
            t = torch.full((b,), 0.5)
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.amp):
                diffusion_loss(make_diffusion(c), model, x0, cond, t, torch.empty_like(x0), c, {})
            return {"params": sum(p.numel() for p in model.parameters()),
                    "saved_bytes": sum(seen.values()),
                    "largest_tensor_bytes": max(seen.values(), default=0),
                    "largest_unit_bytes": max(per_unit.values(), default=0)}

    cfg = replace(cfg, batch_size=batch, conditions=["label"])
    if getattr(cfg, "object_weight", 0):  # per-pixel loss weights from masks: no activations
        cfg = replace(cfg, object_weight=0.0)
    if getattr(cfg, "latent", ""):
        # a latent preset: the denoiser sees the autoencoder's latent. Resolve its shape
        # here (loading the autoencoder is real I/O, not for FakeTensorMode) and measure the
        # denoiser alone on latents of that shape (the frozen encoder saves nothing).
        from viddiff_mini.latent import data_shape
        ch, t, h, w = data_shape(cfg)
        cfg = replace(cfg, latent="", frames=t, size=h,
                      model_kwargs={**cfg.model_kwargs, "in_channels": ch})
    plain = run(replace(cfg, grad_checkpoint=False))
    if not cfg.grad_checkpoint:
        return plain
    ckpt = run(cfg)
    ckpt["largest_unit_bytes"] = plain["largest_unit_bytes"]
    ckpt["largest_tensor_bytes"] = plain["largest_tensor_bytes"]
    return ckpt


def _estimate(params: int, saved: float, largest_tensor: float, largest_unit: float,
              checkpoint: bool) -> dict:
    static = params * STATIC_BYTES_PER_PARAM
    recompute = largest_unit if checkpoint else 0.0
    transient = 2 * largest_tensor
    act = saved + recompute + transient
    total = static + act * (1 + MARGIN)
    return {"static_gib": static / GIB, "saved_activations_gib": saved / GIB,
            "recompute_peak_gib": recompute / GIB, "transient_gib": transient / GIB,
            "margin_gib": act * MARGIN / GIB, "estimate_gib": total / GIB}


def memory_model(cfg: TrainConfig, batch: int | None = None) -> dict:
    """Estimated peak training memory of ``cfg`` at ``batch`` (default: the config's).

    Returns the components (GiB), ``estimate_gib``, the per-clip slope, and for each card in
    :data:`CARDS` the largest batch whose estimate fits 80% of its memory.
    """
    batch = batch or cfg.batch_size
    one, two = saved_activations(cfg, 1), saved_activations(cfg, 2)
    at = saved_activations(cfg, batch) if batch not in (1, 2) else (one if batch == 1 else two)
    slope = {k: two[k] - one[k] for k in ("saved_bytes", "largest_tensor_bytes",
                                           "largest_unit_bytes")}
    est = _estimate(at["params"], at["saved_bytes"], at["largest_tensor_bytes"],
                    at["largest_unit_bytes"], cfg.grad_checkpoint)

    def at_batch(b: int) -> float:
        parts = {k: one[k] + slope[k] * (b - 1) for k in slope}
        return _estimate(one["params"], parts["saved_bytes"], parts["largest_tensor_bytes"],
                         parts["largest_unit_bytes"], cfg.grad_checkpoint)["estimate_gib"]

    fits = {card: {"budget_gib": round(gib * HEADROOM, 1),
                   "largest_batch": largest_batch(at_batch, gib * HEADROOM)}
            for card, gib in CARDS.items()}
    return {"benchmark": "memory", "model": cfg.model, "model_kwargs": cfg.model_kwargs,
            "params": at["params"], "batch": batch, "frames": cfg.frames, "size": cfg.size,
            "grad_checkpoint": cfg.grad_checkpoint, "precision": "bf16 autocast",
            **{k: round(v, 3) for k, v in est.items()},
            "saved_activations_per_clip_gib": round(slope["saved_bytes"] / GIB, 4),
            "fits": fits, "method": "FakeTensorMode forward + saved_tensors_hooks (no GPU)",
            "device": {"type": "fake", "name": "estimate (no device)"}}


def largest_batch(estimate_at, budget_gib: float, limit: int = 1 << 16) -> int:
    """The largest batch ``b`` with ``estimate_at(b) <= budget_gib`` (0 if even 1 does not fit)."""
    if estimate_at(1) > budget_gib:
        return 0
    lo, hi = 1, 2
    while hi < limit and estimate_at(hi) <= budget_gib:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if estimate_at(mid) <= budget_gib else (lo, mid)
    return lo


def steps_for_budget(cfg: TrainConfig, minutes: float = 20.0, mfu: float = 0.20,
                     peak_tflops: float = 989.0) -> dict:
    """Training steps that ``minutes`` of a GPU at ``mfu`` of ``peak_tflops`` buy for ``cfg``,
    and how many passes over the fold's train split (of ``cfg``'s classes) they make.

    Model FLOPs per step (forward + backward, no recompute: MFU's convention) are counted by
    ``FlopCounterMode`` on the meta device at batch 1, times the batch.
    """
    from viddiff_mini.benchmarks.common import count_flops
    from viddiff_mini.benchmarks.train_step import make_inputs
    from viddiff_mini.data import synthetic
    from viddiff_mini.train import build_model_for, diffusion_loss, make_diffusion

    c = replace(cfg, grad_checkpoint=False, conditions=["label"])
    if getattr(c, "object_weight", 0):  # per-pixel loss weights: no FLOPs by the counter
        c = replace(c, object_weight=0.0)
    with torch.device("meta"):
        model = build_model_for(c)
    model.train()
    inp = make_inputs(c, 1, torch.device("meta"))

    def fwd_bwd():
        cond = {"label": inp["label"], "label_keep": inp["keep"]}
        diffusion_loss(make_diffusion(c), model, inp["video"], cond, inp["t"], inp["noise"],
                       c, {}).backward()

    flops = count_flops(fwd_bwd) * cfg.batch_size
    steps = int(minutes * 60 * mfu * peak_tflops * 1e12 // flops)
    table = synthetic.clip_index_table()
    n_train = sum(1 for i in synthetic.split_indices("train", cfg.fold)
                  if table[i][0] < cfg.num_classes)
    return {"flops_per_step": flops, "steps": steps, "train_clips": n_train,
            "passes": steps * cfg.batch_size / n_train, "minutes": minutes, "mfu": mfu,
            "peak_tflops": peak_tflops}


def memory_table(result: dict) -> str:
    """Human summary of :func:`memory_model`."""
    r = result
    lines = [f"memory {r['model']:>7} {r['params'] / 1e6:.1f}M params, batch {r['batch']} x "
             f"{r['frames']}x{r['size']}^2, bf16 autocast, checkpointing "
             f"{'on' if r['grad_checkpoint'] else 'off'}: estimate {r['estimate_gib']:.1f} GiB",
             f"  static (param+grad+AdamW+EMA+bf16 copy) {r['static_gib']:.2f} | saved "
             f"activations {r['saved_activations_gib']:.2f} ({r['saved_activations_per_clip_gib']:.3f}"
             f"/clip) | recompute {r['recompute_peak_gib']:.2f} | transient "
             f"{r['transient_gib']:.2f} | margin {r['margin_gib']:.2f}"]
    for card, f in r["fits"].items():
        lines.append(f"  {card}: largest batch {f['largest_batch']} within {f['budget_gib']} GiB "
                     f"(80% of the card)")
    return "\n".join(lines)
