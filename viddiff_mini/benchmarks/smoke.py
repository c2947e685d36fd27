"""The first thing to run on a new GPU: one eager training step at the real shapes.

    python -m viddiff_mini.benchmarks.smoke --preset gpu --out DIR   # writes DIR/smoke.json

Builds the preset's model (U-Net, or ``--model dit``), runs one warm-up and one timed
training step exactly as the trainer does (bf16 autocast, backward, clipping, AdamW, EMA),
with every SDPA call's shape recorded, and reports: loss (finite?), step time, peak memory
measured (CUDA) next to the memory model's estimate, and any SDPA call beyond the kernels'
limits. ``scripts/gpu_check.sh`` runs it first, under a 60-second timeout, before any
benchmark: if the GPU path is broken this says how, in a minute.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path


def smoke(preset: str = "gpu", model: str | None = None, batch: int | None = None,
          device: str = "auto", estimate: bool = True) -> dict:
    from viddiff_mini.benchmarks import common
    from viddiff_mini.benchmarks.train_step import bench_config, build_train_step
    from viddiff_mini.nn.sdpa import record_sdpa_calls, sdpa_violations

    cfg = bench_config(preset, model=model, batch=batch)
    dev = common.resolve_device(device)
    info = common.device_info(dev)
    t0 = time.perf_counter()
    parts = build_train_step(cfg, dev)
    build_s = time.perf_counter() - t0
    common.reset_peak_memory(dev)
    with record_sdpa_calls() as calls:
        t0 = time.perf_counter()
        parts["step"]()  # warm-up: cuDNN autotuning, allocator growth
        common.sync(dev)
        first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    parts["step"]()
    common.sync(dev)
    step_s = time.perf_counter() - t0
    loss = float(parts["loss_of"](parts["model"], parts["inputs"]).detach())
    result = {"benchmark": "smoke", "preset": preset, "model": cfg.model,
              "batch": cfg.batch_size, "frames": cfg.frames, "size": cfg.size,
              "grad_checkpoint": cfg.grad_checkpoint, "params": common.count_params(parts["model"]),
              "loss": loss, "loss_finite": math.isfinite(loss), "build_s": build_s,
              "first_step_s": first_s, "step_s": step_s,
              "peak_memory_gb": common.peak_memory_gb(dev),
              "sdpa_calls": len(calls), "sdpa_max_batch": max((c.batch for c in calls), default=0),
              "sdpa_violations": sdpa_violations(calls), "device": info}
    if estimate:
        from viddiff_mini.benchmarks.memory import memory_model
        result["memory_estimate_gib"] = memory_model(cfg)["estimate_gib"]
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="gpu")
    p.add_argument("--model", default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-estimate", action="store_true", help="skip the memory model")
    p.add_argument("--out", default=None, help="folder for smoke.json")
    args = p.parse_args(argv)
    r = smoke(args.preset, args.model, args.batch, args.device, not args.no_estimate)
    text = json.dumps(r, indent=2)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "smoke.json").write_text(text)
    ok = r["loss_finite"] and not r["sdpa_violations"]
    print(f"smoke: {'ok' if ok else 'FAILED'}: {r['model']} batch {r['batch']} step "
          f"{r['step_s']:.3f} s, loss {r['loss']:.4f}, peak {r['peak_memory_gb']} GiB "
          f"(estimate {r.get('memory_estimate_gib')}) [{r['device']['name']}]", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
