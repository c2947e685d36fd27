"""``viddiff bench``: throughput, MFU and memory, reproducible with one command.

    viddiff bench train  [--model unet3d|dit] [--batch B] [--frames T] [--size S]
    viddiff bench peers  [--peers diffusers,make-a-video,video-diffusion]
    viddiff bench sample [--steps 50]
    viddiff bench data
    viddiff bench memory [--model unet3d|dit] [--batch B] [--no-grad-checkpoint]
    viddiff bench all    --out bench/          # everything above, one run, one JSON
    viddiff bench constraints > constraints.txt

Shapes default to the ``--preset`` (``auto``: the gpu preset with CUDA, else cpu). Each
command prints a short table and the full JSON; ``--out DIR`` also writes ``DIR/<name>.json``
(and ``peers.png`` for the peers chart). How each figure is measured is documented in
``viddiff_mini/benchmarks/`` (warm-up excluded, median of N, CUDA events, FLOPs by
``FlopCounterMode``, MFU against the device's dense bf16 peak).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ACTIONS = ("train", "peers", "sample", "data", "memory", "all", "constraints")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=ACTIONS, help="what to measure")
    p.add_argument("--preset", default="auto", help="shapes and model sizes: tiny|cpu|gpu|auto")
    p.add_argument("--model", default=None, help="unet3d | dit (bench train / sample / data)")
    p.add_argument("--batch", type=int, help="batch size (default: the preset's)")
    p.add_argument("--frames", type=int, help="frames per clip")
    p.add_argument("--size", type=int, help="height = width of a clip")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps (train/peers, default 20/10) or DDIM steps (sample, 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up steps")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", dest="compile", action="store_true", default=None,
                   help="torch.compile the model (CUDA; default: the preset's setting)")
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--grad-checkpoint", action="store_true", default=None)
    p.add_argument("--no-grad-checkpoint", dest="grad_checkpoint", action="store_false")
    p.add_argument("--channels-last", action="store_true", help="bench train: NDHWC layout")
    p.add_argument("--peers", default=None, help="comma list of peers (default: all)")
    p.add_argument("--no-dit", action="store_true", help="bench peers: skip our DiT row")
    p.add_argument("--out", default=None, help="folder for JSON results (and charts)")


def _config(args):
    from viddiff_mini.benchmarks.train_step import bench_config
    return bench_config(args.preset, model=args.model, batch=args.batch, frames=args.frames,
                        size=args.size, grad_checkpoint=args.grad_checkpoint)


def _fmt(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def summary_line(result: dict) -> str:
    """One human line per result (the JSON holds everything)."""
    kind = result["benchmark"]
    dev = result["device"]["name"]
    if kind == "train":
        mfu = "n/a (CPU)" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
        return (f"train  {result['model']:>7} {result['params'] / 1e6:7.2f}M  batch "
                f"{result['batch']} x {result['frames']}x{result['size']}^2  "
                f"{result['step_s'] * 1e3:8.1f} ms/step  {result['clips_per_s']:8.1f} clips/s  "
                f"{_fmt(result['achieved_tflops'])} TFLOP/s  MFU {mfu}  "
                f"peak {_fmt(result['peak_memory_gb'], '.2f')} GiB  [{dev}]")
    if kind == "sample":
        return (f"sample {result['model']:>7} DDIM-{result['steps']} batch {result['batch']} "
                f"x {result['frames']}x{result['size']}^2  {result['clips_per_s']:.2f} clips/s  "
                f"[{dev}]")
    if kind == "data":
        return (f"data   render {result['render_clips_per_s']:.0f} clips/s vs train "
                f"{result['train_clips_per_s']:.1f} clips/s: ratio {result['ratio']:.1f}x "
                f"(target {result['target_ratio']:.0f}x)  [{dev}]")
    if kind == "peers":
        from viddiff_mini.benchmarks.peers import peers_table
        return peers_table(result)
    if kind == "memory":
        from viddiff_mini.benchmarks.memory import memory_table
        b = result["budget"]
        return (memory_table(result) + f"\n  20 min at {100 * b['mfu']:.0f}% MFU of a "
                f"{b['peak_tflops']:.0f} TFLOP/s GPU: {b['steps']} steps = {b['passes']:.1f} "
                f"passes over {b['train_clips']} training clips")
    return json.dumps(result)


def run(args) -> list[dict]:
    """Run the requested benchmark(s); return the JSON-able results."""
    from viddiff_mini.benchmarks.data_rate import bench_data
    from viddiff_mini.benchmarks.peers import bench_peers
    from viddiff_mini.benchmarks.sampling import bench_sample
    from viddiff_mini.benchmarks.train_step import bench_train

    cfg = _config(args)
    results = []
    if args.action == "memory":
        from viddiff_mini.benchmarks.memory import memory_model, steps_for_budget
        result = memory_model(cfg)
        result["budget"] = steps_for_budget(cfg)
        return [result]
    if args.action in ("train", "all"):
        results.append(bench_train(cfg, steps=args.steps or 20, warmup=args.warmup,
                                   compile=args.compile, device=args.device,
                                   channels_last=args.channels_last))
        if args.action == "all" and args.model is None:
            from viddiff_mini.benchmarks.train_step import bench_config
            dit = bench_config(args.preset, model="dit", batch=args.batch, frames=args.frames,
                               size=args.size)
            results.append(bench_train(dit, steps=args.steps or 20, warmup=args.warmup,
                                       compile=args.compile, device=args.device))
    if args.action in ("data", "all"):
        reuse = results[0] if args.action == "all" else None
        results.append(bench_data(cfg, device=args.device, train_result=reuse))
    if args.action in ("sample", "all"):
        results.append(bench_sample(cfg, steps=50 if args.action == "all" else (args.steps or 50),
                                    device=args.device, compile=args.compile))
    if args.action in ("peers", "all"):
        peers = None if args.peers is None else [s.strip() for s in args.peers.split(",") if s]
        results.append(bench_peers(cfg, steps=args.steps or 10, warmup=args.warmup,
                                   device=args.device, peers=peers, include_dit=not args.no_dit,
                                   compile=args.compile))
    return results


def main(args) -> int:
    if args.action == "constraints":
        from viddiff_mini.benchmarks.install import constraints
        sys.stdout.write(constraints())
        return 0
    try:
        results = run(args)
    except ValueError as e:
        print(f"viddiff bench: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(summary_line(r))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        from viddiff_mini.utils import atomic_write_bytes
        for r in results:
            name = r["benchmark"] + ("_" + r["model"] if r["benchmark"] == "train" else "")
            atomic_write_bytes(out / f"{name}.json", json.dumps(r, indent=2).encode())
            if r["benchmark"] == "peers":
                from viddiff_mini.benchmarks.peers import peers_chart
                peers_chart(r, out / "peers.png")
        print(f"results written to {out}/")
    else:
        print(json.dumps(results, indent=2))
    return 0
