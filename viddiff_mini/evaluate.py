"""``viddiff eval``: is the model real? Score a run's samples against MovingShapes-101.

    viddiff eval train-probe --steps 3000            # the classifier behind the scores
    viddiff eval runs/main --n-per-class 8           # JSON + a table

For a run, N clips per class are sampled (fixed seed) and scored:

* ``probe_accuracy``: fraction of clips of class k that the probe recognises as class k;
* ``fvd_probe``: Frechet distance between probe features of the samples and of real test
  clips (the protocol of ``metrics/fvd.py`` when present). It is *not* the published FVD
  (which uses I3D Kinetics features) and is named so everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from viddiff_mini.metrics.probe import (
    DEFAULT_PROBE,
    load_probe,
    probe_accuracy,
    probe_main,
)
from viddiff_mini.utils import atomic_write_bytes


@torch.no_grad()
def evaluate_run(run: str | Path, n_per_class: int = 4, steps: int = 50,
                 sampler: str = "ddim", guidance: float | None = None, seed: int = 0,
                 probe_path: str | Path | None = None, batch: int = 64,
                 progress: bool = True, fvd: bool = True, controls: bool = True) -> dict:
    """Sample ``n_per_class`` clips for every class of a run and score them.

    Always: probe accuracy. ``fvd``: FVD-probe and the temporal metrics of
    ``metrics/fvd.py`` (protocol ``msh101-v1``, restricted to the run's classes).
    ``controls``: for a run trained with ``--conditions`` other than the label, the
    ground-truth control metrics of ``metrics/control.py`` (trajectory error in pixels,
    masked PSNR, first-frame fidelity, attribute error, gravity error, text-video score).
    """
    from viddiff_mini.data.synthetic import CLASS_NAMES
    from viddiff_mini.train import load_run, sample_grid

    model, diffusion, cfg = load_run(run)
    device = next(model.parameters()).device
    probe = load_probe(probe_path, device=device)
    labels = torch.arange(cfg.num_classes).repeat_interleave(n_per_class)
    chunks = []
    for i in range(0, len(labels), batch):
        chunks.append(sample_grid(model, diffusion, cfg, device, len(labels[i:i + batch]),
                                  seed=seed + i, labels=labels[i:i + batch], steps=steps,
                                  guidance=guidance, sampler=sampler, progress=progress).cpu())
    samples = torch.cat(chunks)
    acc = probe_accuracy(probe, samples, labels)
    report = {
        "run": str(run), "num_classes": cfg.num_classes, "n_per_class": n_per_class,
        "sampler": sampler, "steps": steps, "guidance": cfg.guidance if guidance is None else guidance,
        "probe_accuracy": acc["accuracy"],
        "per_class": {CLASS_NAMES[k]: v for k, v in acc["per_class"].items()},
        "probe": str(probe_path or DEFAULT_PROBE),
    }
    if fvd:
        from viddiff_mini.metrics.fvd import evaluate_samples
        report.update(evaluate_samples(samples, labels=labels, probe=probe, frames=cfg.frames,
                                       size=cfg.size))
    if controls and cfg.conditions != ["label"]:
        from viddiff_mini.metrics.control import evaluate_controls
        ctrl = evaluate_controls(model, diffusion, cfg, n=min(8, len(labels)), steps=steps,
                                 seed=seed, guidance=guidance)
        report.update({f"control/{k}": v for k, v in ctrl.items() if k != "run"})
    return report


def format_table(report: dict) -> str:
    keys = [k for k, v in report.items() if isinstance(v, (int, float, str)) and k != "run"]
    width = max(len(k) for k in keys)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    for k in keys:
        v = report[k]
        lines.append(f"{k.ljust(width)}  {v:.4f}" if isinstance(v, float)
                     else f"{k.ljust(width)}  {v}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a run folder, or `train-probe` to train the probe")
    p.add_argument("--n-per-class", type=int, default=4)
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps for a run (default 50); training steps for train-probe "
                        "(default 3000)")
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--guidance", type=float)
    p.add_argument("--probe", help=f"probe weights (default {DEFAULT_PROBE})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fvd", action="store_true",
                   help="skip FVD-probe and temporal metrics (they render 10 real clips per "
                        "class and estimate optical flow: slow on a CPU)")
    p.add_argument("--no-controls", action="store_true", help="skip the control metrics")
    p.add_argument("--out", help="run: report JSON path (default RUN/eval.json); "
                                 "train-probe: probe weights path")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--classes", type=int, default=101, help="train-probe: first K classes")
    p.add_argument("--lr", type=float, default=2e-3, help="train-probe: learning rate")
    p.add_argument("--eval-n", type=int, default=2000, help="train-probe: test clips to score")
    p.add_argument("--init", help="train-probe: continue from this probe file (fine-tune)")


def main(args: argparse.Namespace) -> int:
    if args.target == "train-probe":
        args.out = args.out or str(DEFAULT_PROBE)
        args.steps = args.steps or 3000
        args.batch = args.batch or 32
        return probe_main(args)
    try:
        report = evaluate_run(args.target, n_per_class=args.n_per_class,
                              steps=args.steps or 50, sampler=args.sampler,
                              guidance=args.guidance, seed=args.seed, probe_path=args.probe,
                              batch=args.batch or 64, fvd=not args.no_fvd,
                              controls=not args.no_controls)
    except (FileNotFoundError, ValueError) as e:
        print(f"viddiff eval: {e}", file=sys.stderr)
        return 1
    out = Path(args.out) if args.out else Path(args.target) / "eval.json"
    atomic_write_bytes(out, json.dumps(report, indent=2).encode())
    print(format_table(report))
    print(f"report: {out}")
    return 0
