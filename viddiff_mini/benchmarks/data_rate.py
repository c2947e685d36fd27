"""``viddiff bench data``: can the MovingShapes renderer feed the trainer?

What is measured:

* **render clips/s**: ``synthetic.render_batch(indices, frames, size, device=device)`` for a
  batch of ``batch`` clips (new indices each call, as in training: scene construction on
  the host plus rendering with tensor ops on the device, ``truth=False`` as the
  label-conditional trainer uses it), median of ``repeats`` calls after one warm-up.
* **train clips/s**: :func:`~viddiff_mini.benchmarks.train_step.bench_train` at the same
  model, batch and clip size (the trainer's full step, data excluded).
* **ratio** = render / train. The renderer runs in the training process between steps, so
  it costs ``1 / ratio`` of the training time; the target on GPU is a ratio >= 20 (data
  costs under 5% of a step).
"""

from __future__ import annotations

import torch

from viddiff_mini.benchmarks import common
from viddiff_mini.benchmarks.train_step import bench_train
from viddiff_mini.config import TrainConfig

TARGET_RATIO = 20.0


def bench_render(batch: int, frames: int, size: int, repeats: int = 5,
                 device: str | torch.device | None = None, truth: bool = False) -> dict:
    """Clips/s of ``render_batch`` for batches of ``batch`` clips of ``frames`` x ``size``^2."""
    from viddiff_mini.data import synthetic

    device = common.resolve_device(device)
    calls = iter(range(10**9))

    def render():
        start = (next(calls) * batch * 7919) % synthetic.NUM_CLIPS  # fresh clips each call
        idx = [(start + i) % synthetic.NUM_CLIPS for i in range(batch)]
        return synthetic.render_batch(idx, frames=frames, size=size, device=device, truth=truth)

    timing = common.time_calls(render, repeats, 1, device)
    return {"batch": batch, "frames": frames, "size": size, "truth": truth,
            "seconds_per_batch": timing["median_s"], "times_s": timing["times_s"],
            "clips_per_s": batch / timing["median_s"]}


def bench_data(cfg: TrainConfig, repeats: int = 5, train_steps: int = 10,
               train_warmup: int = 3, device: str | torch.device | None = None,
               train_result: dict | None = None) -> dict:
    """Render rate vs training consumption at ``cfg``'s batch and clip size.

    ``train_result`` reuses a ``bench train`` result of the same config (``bench all``).
    """
    device = common.resolve_device(device)
    render = bench_render(cfg.batch_size, cfg.frames, cfg.size, repeats, device)
    train = train_result or bench_train(cfg, steps=train_steps, warmup=train_warmup,
                                        device=device, flops=False, sdpa_check=False)
    ratio = render["clips_per_s"] / train["clips_per_s"]
    return {
        "benchmark": "data", "model": cfg.model,
        "batch": cfg.batch_size, "frames": cfg.frames, "size": cfg.size,
        "render_clips_per_s": render["clips_per_s"],
        "render_seconds_per_batch": render["seconds_per_batch"],
        "train_clips_per_s": train["clips_per_s"],
        "ratio": ratio, "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "data_share_of_step": 1.0 / (1.0 + ratio),
        "device": common.device_info(device),
        "note": "target applies on GPU; on CPU the renderer and the model share the cores",
    }
