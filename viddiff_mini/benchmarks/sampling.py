"""``viddiff bench sample``: generation throughput (clips/s) of DDIM sampling.

What is measured: ``Diffusion.sample(model, (batch, 3, frames, size, size), sampler="ddim",
steps=N)`` under the trainer's precision (bf16 autocast on CUDA), class-conditional, with
no classifier-free guidance unless ``guidance`` is given (CFG doubles the model calls).
Weights are the freshly initialised model: the cost of sampling does not depend on the
weights' values. One short untimed sampling run (2 steps) warms up cuDNN / the allocator;
then ``repeats`` full runs are timed (CUDA events on GPU) and the median is reported.
Defaults are the GPU figure of interest: DDIM-50 at 16x64x64, batch 64.
"""

from __future__ import annotations

import torch

from viddiff_mini.benchmarks import common
from viddiff_mini.config import TrainConfig
from viddiff_mini.utils import autocast


def bench_sample(cfg: TrainConfig, steps: int = 50, repeats: int = 1,
                 guidance: float | None = None, device: str | torch.device | None = None,
                 compile: bool | None = None) -> dict:
    """Clips/s of DDIM-``steps`` sampling for ``cfg``'s model at ``cfg``'s batch and clip size."""
    from viddiff_mini.train import build_model_for, make_diffusion

    if steps < 1 or repeats < 1:
        raise ValueError(f"--steps and --repeats: expected >= 1, got {steps}, {repeats}")
    device = common.resolve_device(device)
    info = common.device_info(device)
    compile = (cfg.compile if compile is None else compile) and device.type == "cuda"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(cfg.seed)
    model = build_model_for(cfg).to(device).eval()
    net = torch.compile(model) if compile else model
    diffusion = make_diffusion(cfg)
    b = cfg.batch_size
    from viddiff_mini.latent import data_shape
    shape = (b, *data_shape(cfg))  # a latent preset samples latents (decoding not timed)
    cond = {"label": torch.arange(b, device=device) % cfg.num_classes}

    def run(n_steps: int):
        g = torch.Generator(device=device).manual_seed(0)
        with autocast(device, cfg.amp), torch.inference_mode():
            return diffusion.sample(net, shape, cond=cond, sampler="ddim", steps=n_steps,
                                    guidance=guidance, generator=g, device=device)

    run(2)  # warm-up: cuDNN autotuning, allocator, compile
    common.reset_peak_memory(device)
    timing = common.time_calls(lambda: run(steps), repeats, 0, device)
    median = timing["median_s"]
    evals = steps * (2 if guidance else 1)  # CFG: a conditional and an unconditional call
    return {
        "benchmark": "sample", "model": cfg.model, "params": common.count_params(model),
        "sampler": "ddim", "steps": steps, "guidance": guidance,
        "batch": b, "frames": cfg.frames, "size": cfg.size,
        "precision": info["precision"] if cfg.amp else "fp32", "compile": compile,
        "seconds": median, "times_s": timing["times_s"],
        "clips_per_s": b / median, "seconds_per_clip": median / b,
        "model_evals_per_s": evals / median,
        "peak_memory_gb": common.peak_memory_gb(device),
        "device": info,
    }
