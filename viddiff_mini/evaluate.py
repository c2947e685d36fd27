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

from viddiff_mini.metrics.fvd import PROTOCOLS, evaluate_samples
from viddiff_mini.metrics.probe import (
    DEFAULT_PROBE,
    load_probe,
    probe_accuracy,
    probe_main,
)
from viddiff_mini.utils import atomic_write_bytes


def real_clips_of(class_ids: list[int], n_per_class: int, frames: int, size: int,
                  fold: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(videos, data-set labels): the first ``n_per_class`` held-out test clips of each class."""
    from viddiff_mini.data import synthetic

    table = synthetic.clip_index_table()
    test = synthetic.split_indices("test", fold)
    idx = []
    for k in class_ids:
        idx += [i for i in test if table[i][0] == k][:n_per_class]
    b = synthetic.render_batch(idx, frames=frames, size=size, seed=seed)
    return b["video"], b["label"]


@torch.no_grad()
def evaluate_run(run: str | Path, n_per_class: int = 4, steps: int = 50,
                 sampler: str = "ddim", guidance: float | None = None, seed: int = 0,
                 probe_path: str | Path | None = None, batch: int = 64,
                 progress: bool = True, fvd: bool = True, controls: bool = True,
                 objects: bool = True, return_samples: bool = False,
                 n_controls: int = 8, motion_guidance: float | None = None,
                 fvd_protocol: str = "msh101-v1"):
    """Sample ``n_per_class`` clips for every class of a run (a run folder or a pretrained
    name) and score them.

    Always: ``probe_accuracy`` (101-way argmax), ``probe_accuracy_in_run_classes`` (argmax
    over the run's own classes) and ``real_ceiling`` / ``real_ceiling_in_run_classes`` (the
    same two on as many *real* held-out clips of those classes at the run's resolution:
    the most the samples can score); for a latent run also ``ae_ceiling`` /
    ``ae_ceiling_in_run_classes`` (on the autoencoder's round trip of those real clips, the
    most its decoded samples can score), with ``objects`` ``ae_colour_drift`` and
    ``ae_mask_persistence`` too. ``objects``: motion direction against ground truth,
    colour drift and mask persistence (``metrics/objects.py``), each with its real-clip
    yardstick. ``fvd``: FVD-probe (flagged ``fvd_reliable: false`` when there are fewer
    real clips or samples than feature dimensions) and the temporal metrics of
    ``metrics/fvd.py``, against the real clips of ``fvd_protocol`` (``"msh101-dense-v1"``:
    20 per class, enough for a reliable distance over 8 classes). ``controls``: for a run
    trained with ``--conditions`` other than the label, the ground-truth control metrics
    of ``metrics/control.py`` on ``n_controls`` held-out clips spread over the run's
    classes (``motion_guidance``: a first-frame model's motion request sampled with its
    own nested scale in the motion report).
    """
    from viddiff_mini.train import load_run, sample_grid

    model, diffusion, cfg = load_run(run)
    device = next(model.parameters()).device
    probe = load_probe(probe_path, device=device)
    ids = cfg.class_ids()
    labels = torch.arange(cfg.num_classes).repeat_interleave(n_per_class)
    global_labels = torch.as_tensor(ids)[labels]
    chunks = []
    for i in range(0, len(labels), batch):
        chunks.append(sample_grid(model, diffusion, cfg, device, len(labels[i:i + batch]),
                                  seed=seed + i, labels=labels[i:i + batch], steps=steps,
                                  guidance=guidance, sampler=sampler, progress=progress).cpu())
    samples = torch.cat(chunks)
    acc = probe_accuracy(probe, samples, global_labels)
    acc_run = probe_accuracy(probe, samples, global_labels, restrict_to=ids)
    real, real_labels = real_clips_of(ids, n_per_class, cfg.frames, cfg.size, cfg.fold)
    names = cfg.class_names()
    report = {
        "run": str(run), "num_classes": cfg.num_classes, "classes": names,
        "n_per_class": n_per_class, "n_samples": len(labels), "frames": cfg.frames,
        "size": cfg.size, "latent": cfg.latent,
        "sampler": sampler, "steps": steps, "guidance": cfg.guidance if guidance is None else guidance,
        "probe_accuracy": acc["accuracy"],
        "probe_accuracy_in_run_classes": acc_run["accuracy"],
        "real_ceiling": probe_accuracy(probe, real, real_labels)["accuracy"],
        "real_ceiling_in_run_classes": probe_accuracy(probe, real, real_labels,
                                                      restrict_to=ids)["accuracy"],
        "per_class": {names[ids.index(k)]: v for k, v in acc["per_class"].items()},
        "per_class_in_run_classes": {names[ids.index(k)]: v
                                     for k, v in acc_run["per_class"].items()},
        "probe": str(probe_path or DEFAULT_PROBE),
    }
    if objects:
        from viddiff_mini.metrics.objects import object_report
        report.update(object_report(samples, global_labels, real, real_labels))
    from viddiff_mini.latent import load_latent, round_trip
    ae = load_latent(cfg, device)
    if ae is not None:
        # the autoencoder's round trip of the same real clips: what a latent model that
        # reproduced their latents would score (the decoder's blur and colour shifts included)
        rec = round_trip(ae, real, batch)
        report["ae_ceiling"] = probe_accuracy(probe, rec, real_labels)["accuracy"]
        report["ae_ceiling_in_run_classes"] = probe_accuracy(probe, rec, real_labels,
                                                             restrict_to=ids)["accuracy"]
        if objects:
            from viddiff_mini.metrics.objects import persistence_report
            report.update({f"ae_{k}": v for k, v in persistence_report(rec).items()})
    if fvd:
        report.update(evaluate_samples(samples, labels=global_labels, probe=probe,
                                       frames=cfg.frames, size=cfg.size,
                                       protocol=fvd_protocol))
    if controls and cfg.conditions != ["label"]:
        from viddiff_mini.metrics.control import evaluate_controls
        ctrl = evaluate_controls(model, diffusion, cfg, n=n_controls, steps=steps,
                                 seed=seed, guidance=guidance,
                                 motion_guidance=motion_guidance)
        report.update({f"control/{k}": v for k, v in ctrl.items() if k != "run"})
    return (report, samples) if return_samples else report


def format_table(report: dict) -> str:
    keys = [k for k, v in report.items() if isinstance(v, (int, float, str)) and k != "run"]
    width = max(len(k) for k in keys)
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    for k in keys:
        v = report[k]
        lines.append(f"{k.ljust(width)}  {v:.4f}" if isinstance(v, float)
                     else f"{k.ljust(width)}  {v}")
    return "\n".join(lines)


def fvd_advice(report: dict, protocol: str) -> str:
    """Why an ``fvd_reliable: false`` report is biased, and the option that fixes each short
    side: the samples (``--n-per-class``) and the real clips (the protocol with the most
    clips per class, when it has more than ``protocol``)."""
    dim, classes = report["fvd_feature_dim"], report["fvd_classes"]
    fixes = []
    if report["fvd_n_fake"] <= dim:
        fixes.append(f"more samples: --n-per-class {-(-(dim + 1) // classes)}")
    if report["fvd_n_real"] <= dim:
        densest = max(PROTOCOLS.values(), key=lambda p: p.n_per_class)
        fixes.append(f"more real clips per class: --fvd-protocol {densest.name}"
                     if densest.n_per_class > PROTOCOLS[protocol].n_per_class else
                     f"no protocol has more than {densest.n_per_class} real clips per class "
                     f"for these {classes} classes")
    return (f"fvd_probe from {report['fvd_n_real']} real clips and {report['fvd_n_fake']} samples "
            f"for {dim}-dim features is biased (fvd_reliable false): compare it only with the "
            f"same counts; " + "; ".join(fixes))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", help="a run folder, a pretrained generator's name, or "
                                  "`train-probe` to train the probe")
    p.add_argument("--n-per-class", type=int, default=4)
    p.add_argument("--steps", type=int, default=None,
                   help="sampling steps for a run (default 50); training steps for train-probe "
                        "(default 3000)")
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--guidance", type=float)
    p.add_argument("--probe", help=f"probe weights (default {DEFAULT_PROBE})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fvd", action="store_true",
                   help="skip FVD-probe and temporal metrics (they render the protocol's real "
                        "clips and estimate optical flow: slow on a CPU)")
    p.add_argument("--fvd-protocol", default="msh101-v1", choices=sorted(PROTOCOLS),
                   help="the real clips FVD-probe compares with (msh101-v1: 10 per class; "
                        "msh101-dense-v1: 20 per class, so that a model of 8 or more classes "
                        "gets more real clips than the probe's 128 feature dimensions)")
    p.add_argument("--no-controls", action="store_true", help="skip the control metrics")
    p.add_argument("--n-controls", type=int, default=8,
                   help="held-out clips the control metrics are measured on (control models)")
    p.add_argument("--motion-guidance", type=float, default=None,
                   help="first-frame models: the motion request's own guidance scale in the "
                        "motion report (nested inside the image's, as InstructPix2Pix)")
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
                              controls=not args.no_controls, return_samples=True,
                              n_controls=args.n_controls,
                              motion_guidance=args.motion_guidance,
                              fvd_protocol=args.fvd_protocol)
    except (FileNotFoundError, ValueError) as e:
        print(f"viddiff eval: {e}", file=sys.stderr)
        return 1
    report, samples = report
    target = Path(args.target)
    # a run folder gets RUN/eval.json; a pretrained name or checkpoint file eval-NAME.json here
    out = Path(args.out) if args.out else (
        target / "eval.json" if target.is_dir() else Path(f"eval-{target.stem}.json"))
    atomic_write_bytes(out, json.dumps(report, indent=2).encode())
    from viddiff_mini.viz import save_contact_sheet
    sheet = out.with_suffix(".png")
    save_contact_sheet(samples, sheet)
    print(format_table(report))
    if report.get("fvd_reliable") is False:
        print(f"note: {fvd_advice(report, args.fvd_protocol)}", file=sys.stderr)
    print(f"report: {out}; samples (one clip per row, every 2nd frame): {sheet}")
    return 0
