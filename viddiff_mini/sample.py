"""``viddiff sample RUN``: draw clips from a trained run and write a GIF/MP4 grid.

    viddiff sample runs/main --class BounceBall --n 8 --steps 50 --sampler ddim --out x.gif
    viddiff sample msh-text --text "a red square moves left" --n 4 --out red.gif

A control model (trajectory, first frame, ...) without ``--text`` samples with the controls
of held-out test clips of the class; ``--text`` gives every clip that caption (the model's
other controls are then dropped: models trained with condition dropout accept any subset).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from viddiff_mini.train import load_run, sample_grid


def resolve_label(cfg, class_name: str | None, label: int | None) -> int | None:
    """A class name or index -> an index the run was trained on (clear error otherwise)."""
    names = cfg.class_names()
    if class_name is not None:
        if class_name not in names:
            close = [n for n in names if class_name.lower() in n.lower()][:8]
            raise ValueError(f"--class {class_name!r}: not a class of this run "
                             f"({cfg.num_classes} classes){'; did you mean ' + ', '.join(close) if close else ''}"
                             f"; valid: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
        return names.index(class_name)
    if label is not None and not 0 <= label < cfg.num_classes:
        raise ValueError(f"--label {label}: expected 0..{cfg.num_classes - 1}")
    return label


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder written by `viddiff train`, or a pretrained "
                               "generator's name (`viddiff pretrained list`)")
    p.add_argument("--class", dest="class_name", help="class name, e.g. BounceBall")
    p.add_argument("--label", type=int, help="class index (instead of --class)")
    p.add_argument("--text", help="caption for a text-conditioned model, e.g. "
                                  "\"a red square moves left\"")
    p.add_argument("--n", type=int, default=8, help="number of clips")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sampler", default="ddim", help="ddim | ddpm | euler")
    p.add_argument("--guidance", type=float, help="CFG scale (default: the run's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=int, default=8)
    p.add_argument("--out", default="samples.gif", help=".gif or .mp4")


def main(args: argparse.Namespace) -> int:
    try:
        model, diffusion, cfg = load_run(args.run)
        label = resolve_label(cfg, args.class_name, args.label)
        cond = None
        if args.text is not None:
            if "text" not in cfg.conditions:
                raise ValueError(f"--text: this model is not text-conditioned (its conditions: "
                                 f"{', '.join(cfg.conditions)})")
            from viddiff_mini.control.compose import cond_for_spec
            from viddiff_mini.control.text import tokenize
            tokenize(args.text, unknown="error")   # a typo is an error here, not an <unk>
            spec = {"text": args.text}
            if label is not None and "label" in cfg.conditions:
                spec["label"] = label
            cond = cond_for_spec(spec, cfg.conditions, cfg.frames, cfg.size, batch_size=args.n,
                                 device=next(model.parameters()).device)
    except (FileNotFoundError, ValueError) as e:
        print(f"viddiff sample: {e}", file=sys.stderr)
        return 1
    device = next(model.parameters()).device
    labels = None if label is None else torch.full((args.n,), label, dtype=torch.long)
    x = sample_grid(model, diffusion, cfg, device, args.n, seed=args.seed, labels=labels,
                    steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                    progress=True, cond=cond)
    out = Path(args.out)
    if out.suffix.lower() == ".gif":
        from viddiff_mini.viz import save_gif
        save_gif(x.cpu(), out, fps=args.fps)
    else:
        from viddiff_mini.data.video_io import write_video
        from viddiff_mini.viz import video_grid
        write_video(out, video_grid(x.cpu()), fps=args.fps)
    print(f"wrote {args.n} clips to {out}")
    return 0
