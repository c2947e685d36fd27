"""``viddiff bench train``: the cost of one training step of this package's models.

What one step is: exactly the trainer's step (``viddiff_mini.train``): bf16 autocast forward
of :func:`~viddiff_mini.train.diffusion_loss` (noising, model, v-target MSE), backward,
gradient clipping, AdamW (fused on CUDA), EMA update. The batch is a fixed random clip
tensor on the device, so the data pipeline is *not* part of the step (``bench data``
measures it). Optional ``torch.compile`` (CUDA only, as in the trainer).

Reported: median step time over ``steps`` timed steps after ``warmup`` untimed ones,
clips/s = batch / median, peak memory, model FLOPs per step (forward + backward, counted
by ``FlopCounterMode`` at batch 1 and multiplied by the batch: every layer is per-sample,
so FLOPs are linear in the batch), achieved TFLOP/s and MFU against the device's dense
bf16 peak, and which fused SDPA kernel the model's attention can use on CUDA.

FLOPs are counted with gradient checkpointing switched off for the count (the gpu preset
checkpoints): they are *model* FLOPs, without the recomputed forward, as MFU's convention
wants; the timed steps do recompute, so checkpointing shows up as a lower MFU.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from viddiff_mini.benchmarks import common
from viddiff_mini.config import TrainConfig, get_preset
from viddiff_mini.utils import autocast


def bench_config(preset: str = "auto", model: str | None = None, batch: int | None = None,
                 frames: int | None = None, size: int | None = None,
                 model_kwargs: dict | None = None, grad_checkpoint: bool | None = None,
                 ) -> TrainConfig:
    """The training config a benchmark measures: a preset with the given overrides.

    As in ``viddiff train``, naming another model than the preset's drops the preset's
    U-Net sizes (``model_kwargs``) unless new ones are given.
    """
    cfg = get_preset(preset)
    # object_weight only reweights the loss (no measurable cost) but needs ground-truth
    # masks, which the synthetic benchmark batch does not have
    over: dict = {"conditions": ["label"], "object_weight": 0.0}
    if model is not None and model != cfg.model:
        over["model"], over["model_kwargs"] = model, {}
    if model_kwargs is not None:
        over["model_kwargs"] = dict(model_kwargs)
    for name, value in [("batch_size", batch), ("frames", frames), ("size", size),
                        ("grad_checkpoint", grad_checkpoint)]:
        if value is not None:
            if name != "grad_checkpoint" and value < 1:
                raise ValueError(f"--{name.split('_')[0]}: expected a positive integer, "
                                 f"got {value}")
            over[name] = value
    return replace(cfg, **over)


def make_inputs(cfg: TrainConfig, batch: int, device: torch.device, seed: int = 0) -> dict:
    """A fixed random training batch on ``device``: clips, labels, noise levels, noise, keep."""
    from viddiff_mini.latent import data_shape
    g = torch.Generator().manual_seed(seed)
    # a latent preset's denoiser sees the autoencoder's latent (the encoder pass is not timed)
    shape = (batch, *data_shape(cfg))
    return {
        "video": (torch.rand(shape, generator=g) * 2 - 1).to(device),
        "label": torch.randint(cfg.num_classes, (batch,), generator=g).to(device),
        "t": torch.rand(batch, generator=g).clamp(1e-3, 1 - 1e-3).to(device),
        "noise": torch.randn(shape, generator=g).to(device),
        "keep": (torch.rand(batch, generator=g) >= cfg.cond_drop).to(device),
    }


def build_train_step(cfg: TrainConfig, device: torch.device, compile: bool = False,
                     channels_last: bool = False) -> dict:
    """The trainer's step for ``cfg`` on ``device`` with a fixed batch, as a closure.

    Returns ``{"model", "ema", "opt", "loss_of", "inputs", "step"}``; ``step()`` runs one
    bf16-autocast forward of the diffusion loss, backward, clipping, AdamW and EMA update.
    ``device`` may be ``meta`` (shapes only: the host-sync test and memory model use that);
    the model is then built directly on it, without initialising weights on the CPU.
    """
    from viddiff_mini.train import build_model_for, diffusion_loss, ema_update, make_diffusion

    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    if device.type == "meta":
        with torch.device("meta"):
            model = build_model_for(cfg)
    else:
        model = build_model_for(cfg).to(device)
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    ema = copy.deepcopy(model).requires_grad_(False)
    diffusion = make_diffusion(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.99), fused=device.type == "cuda")
    step_model: nn.Module = torch.compile(model) if compile else model
    model.train()

    def loss_of(net, inp):
        cond = {"label": inp["label"], "label_keep": inp["keep"]}
        x0 = inp["video"].contiguous(memory_format=fmt)
        with autocast(device, cfg.amp):
            return diffusion_loss(diffusion, net, x0, cond, inp["t"], inp["noise"], cfg,
                                  {"video": x0})

    inputs = make_inputs(cfg, cfg.batch_size, device)

    def step():
        loss = loss_of(step_model, inputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, model, cfg.ema_decay)

    return {"model": model, "ema": ema, "opt": opt, "loss_of": loss_of, "inputs": inputs,
            "step": step}


def bench_train(cfg: TrainConfig, steps: int = 20, warmup: int = 5, compile: bool | None = None,
                device: str | torch.device | None = None, flops: bool = True,
                channels_last: bool = False, cudnn_benchmark: bool = True,
                sdpa_check: bool = True) -> dict:
    """Measure the trainer's step for ``cfg`` (model, batch, clip size, precision).

    Args:
        cfg: from :func:`bench_config` (a preset with overrides).
        steps / warmup: timed / untimed steps.
        compile: ``torch.compile`` the model (default: ``cfg.compile``); CUDA only.
        flops: count model FLOPs (one extra fwd+bwd at batch 1 before timing).
        channels_last: convert the model and inputs to ``channels_last_3d`` (an experiment:
            cuDNN's bf16 3-D convolutions are often faster in NDHWC).
        cudnn_benchmark: let cuDNN pick the fastest conv algorithm for these fixed shapes.

    Returns a JSON-able dict (see the module docstring for each figure).
    """
    from viddiff_mini.train import build_model_for

    device = common.resolve_device(device)
    info = common.device_info(device)
    compile = cfg.compile if compile is None else compile
    notes = []
    if compile and device.type != "cuda":
        notes.append("--compile ignored on CPU (the trainer compiles on CUDA only)")
        compile = False
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cudnn_benchmark

    parts = build_train_step(cfg, device, compile=compile, channels_last=channels_last)
    model, loss_of, inputs, step = parts["model"], parts["loss_of"], parts["inputs"], parts["step"]

    flops_per_step = None
    if flops:
        one = make_inputs(cfg, 1, device, seed=1)

        def fwd_bwd():
            loss_of(model, one).backward()

        checkpointing = getattr(model, "checkpoint", None)
        if checkpointing:
            model.checkpoint = False  # model FLOPs: no recomputed forward in the count
        try:
            flops_per_step = common.count_flops(fwd_bwd) * cfg.batch_size
        finally:
            if checkpointing is not None:
                model.checkpoint = checkpointing
        model.zero_grad(set_to_none=True)

    backends = audit = None
    if sdpa_check:
        # at the real batch, forward and backward: the kernels' limits depend on both
        def fwd_bwd_full():
            loss_of(model, inputs).backward()
            model.zero_grad(set_to_none=True)

        backends = common.sdpa_backends(fwd_bwd_full, device)
        audit = common.sdpa_audit(lambda: build_model_for(cfg),
                                  lambda m, x, t, y: m(x, t, {"label": y}),
                                  cfg.batch_size, cfg.frames, cfg.size)

    common.reset_peak_memory(device)
    timing = common.time_calls(step, steps, warmup, device)
    peak = common.peak_memory_gb(device)
    median = timing["median_s"]
    util, why = common.mfu(flops_per_step, median, info)
    return {
        "benchmark": "train",
        "model": cfg.model,
        "model_kwargs": cfg.model_kwargs,
        "params": common.count_params(model),
        "batch": cfg.batch_size, "frames": cfg.frames, "size": cfg.size,
        "precision": info["precision"] if cfg.amp else "fp32",
        "compile": compile, "channels_last": channels_last,
        "cudnn_benchmark": cudnn_benchmark if device.type == "cuda" else None,
        "grad_checkpoint": cfg.grad_checkpoint,
        "steps": steps, "warmup": warmup,
        "step_s": median, "step_mean_s": timing["mean_s"], "step_min_s": timing["min_s"],
        "warmup_s": timing["warmup_s"], "times_s": timing["times_s"],
        "clips_per_s": cfg.batch_size / median,
        "peak_memory_gb": peak,
        "peak_memory_note": None if peak is not None else "not measured on CPU",
        "flops_per_step": flops_per_step,
        "achieved_tflops": flops_per_step / median / 1e12 if flops_per_step else None,
        "mfu": util, "mfu_note": why,
        "sdpa": backends,
        "sdpa_shapes": audit,
        "device": info,
        "notes": notes,
    }
