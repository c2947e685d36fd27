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


def _guarded(name: str, fn, device, extra: dict | None = None) -> dict:
    """Run one benchmark; a crash (OOM, a kernel limit, anything) becomes a result row with
    its ``error`` instead of losing every other number of the run."""
    from viddiff_mini.benchmarks import common

    try:
        return fn()
    except Exception as e:  # noqa: BLE001 -- recorded, never lost
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        try:
            info = common.device_info(common.resolve_device(device))
        except Exception:  # noqa: BLE001
            info = {"name": str(device)}
        msg = str(e).splitlines()[0][:300] if str(e) else ""
        return {"benchmark": name, **(extra or {}), "error": f"{type(e).__name__}: {msg}",
                "error_type": type(e).__name__, "device": info}


def result_name(r: dict) -> str:
    """File name (without .json) of a result: ``train_unet3d``, ``train_unet3d_compiled``, ..."""
    name = r["benchmark"]
    if name == "train":
        name += f"_{r.get('model', 'model')}" + ("_compiled" if r.get("compile") else "")
    return name


def run(args, on_result=None) -> list[dict]:
    """Run the requested benchmark(s); return the JSON-able results.

    Every benchmark runs guarded (:func:`_guarded`) and ``on_result(result)`` is called as
    soon as each one finishes (``main`` writes its JSON then), so a crash or an OOM late in
    ``bench all`` loses nothing measured before it. ``bench all`` runs everything eagerly
    first and compiles once, at the end, for its headline row (our U-Net's training step).
    """
    from viddiff_mini.benchmarks.data_rate import bench_data
    from viddiff_mini.benchmarks.peers import bench_peers
    from viddiff_mini.benchmarks.sampling import bench_sample
    from viddiff_mini.benchmarks.train_step import bench_config, bench_train

    cfg = _config(args)  # bad arguments raise ValueError here, before anything runs
    if args.peers is not None:
        from viddiff_mini.benchmarks.peers import PEERS
        bad = [p for p in args.peers.split(",") if p.strip() and p.strip() not in PEERS]
        if bad:
            raise ValueError(f"--peers: unknown peer(s) {bad}; valid: {', '.join(PEERS)}")
    results: list[dict] = []
    every = args.action == "all"
    steps = args.steps

    def add(result: dict) -> dict:
        results.append(result)
        if on_result is not None:
            on_result(result)
        return result

    if args.action in ("memory", "all"):
        def memory():
            from viddiff_mini.benchmarks.memory import memory_model, steps_for_budget
            result = memory_model(cfg)
            result["budget"] = steps_for_budget(cfg)
            return result
        add(_guarded("memory", memory, "cpu", {"model": cfg.model}))
    if args.action in ("train", "all"):
        compile_now = False if every else args.compile
        first = add(_guarded("train", lambda: bench_train(
            cfg, steps=steps or 20, warmup=args.warmup, compile=compile_now,
            device=args.device, channels_last=args.channels_last), args.device,
            {"model": cfg.model, "compile": bool(compile_now)}))
        if every and args.model is None:
            dit = bench_config(args.preset, model="dit", batch=args.batch, frames=args.frames,
                               size=args.size, grad_checkpoint=args.grad_checkpoint)
            add(_guarded("train", lambda: bench_train(
                dit, steps=steps or 20, warmup=args.warmup, compile=False,
                device=args.device), args.device, {"model": "dit", "compile": False}))
    if args.action in ("data", "all"):
        reuse = first if every and not first.get("error") else None
        add(_guarded("data", lambda: bench_data(cfg, device=args.device, train_result=reuse),
                     args.device))
    if args.action in ("sample", "all"):
        add(_guarded("sample", lambda: bench_sample(
            cfg, steps=50 if every else (steps or 50), device=args.device,
            compile=False if every else bool(args.compile)), args.device, {"model": cfg.model}))
    if args.action in ("peers", "all"):
        peers = None if args.peers is None else [p.strip() for p in args.peers.split(",")
                                                 if p.strip()]
        partial = (lambda r: on_result(r)) if on_result is not None else None
        add(_guarded("peers", lambda: bench_peers(
            cfg, steps=steps or 10, warmup=args.warmup, device=args.device, peers=peers,
            include_dit=not args.no_dit, on_row=partial), args.device))
    if every:  # the headline: our U-Net's step compiled, once, after every eager number
        import torch

        from viddiff_mini.benchmarks.common import resolve_device
        want = cfg.compile if args.compile is None else args.compile
        if want and resolve_device(args.device).type == "cuda" and torch.cuda.is_available():
            add(_guarded("train", lambda: bench_train(
                cfg, steps=steps or 20, warmup=args.warmup, compile=True, device=args.device,
                channels_last=args.channels_last, flops=False, sdpa_check=False),
                args.device, {"model": cfg.model, "compile": True}))
    return results


def _short(r: dict) -> str:
    if r.get("error"):
        what = r["benchmark"] + (f" {r['model']}" if r.get("model") else "")
        return f"{what:<13} FAILED: {r['error']}  [{r['device'].get('name', '?')}]"
    return summary_line(r)


def main(args) -> int:
    if args.action == "constraints":
        from viddiff_mini.benchmarks.install import constraints
        sys.stdout.write(constraints())
        return 0
    from viddiff_mini.utils import atomic_write_bytes

    out = Path(args.out) if args.out else None

    def write(r: dict) -> None:  # as soon as a benchmark (or a peer row) finishes
        if out is None:
            return
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / f"{result_name(r)}.json", json.dumps(r, indent=2).encode())
        if r["benchmark"] == "peers" and r.get("rows") and not r.get("error"):
            try:
                from viddiff_mini.benchmarks.peers import peers_chart
                peers_chart(r, out / "peers.png")
            except Exception as e:  # noqa: BLE001 -- a chart is never worth a number
                print(f"viddiff bench: peers chart not drawn ({e})", file=sys.stderr)

    try:
        results = run(args, on_result=write)
    except ValueError as e:
        print(f"viddiff bench: {e}", file=sys.stderr)
        return 2
    for r in results:
        print(_short(r))
    if out is not None:
        print(f"results written to {out}/")
    else:
        print(json.dumps(results, indent=2))
    failed = [r for r in results if r.get("error")]
    if any(r.get("error_type") == "ValueError" for r in failed):
        return 2
    return 1 if failed else 0
