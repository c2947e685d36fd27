"""The ``viddiff`` command line.

Each sub-command lives next to the code it drives: the module named in ``COMMANDS``
exposes ``add_arguments(parser)`` and ``main(args) -> int``. This file only dispatches,
importing a command's module when that command runs (so ``viddiff --help`` is instant
and a broken optional part never breaks the others).

    viddiff train  --preset tiny|cpu|gpu|auto --data shapes --out runs/x
    viddiff train-ae --preset cpu --out runs/ae
    viddiff sample RUN --class NAME --n 8 --out x.gif
    viddiff eval   RUN | train-probe
    viddiff bench  data|train|sample|peers
    viddiff data   export|inspect|filter|cache
    viddiff ablate --preset cpu|gpu
    viddiff assign OUT/
    viddiff grade  SUBMISSIONS/ --tests HIDDEN/ --out grades.csv
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("viddiff_mini.train", "train a video diffusion model (presets tiny/cpu/gpu/auto)"),
    "train-ae": ("viddiff_mini.train_ae", "train the video autoencoder of the latent route"),
    "sample": ("viddiff_mini.sample", "sample clips from a trained run to GIF/MP4"),
    "eval": ("viddiff_mini.evaluate", "evaluate a run (probe accuracy, FVD-probe, ...) or train the probe"),
    "pretrained": ("viddiff_mini.pretrained", "shipped pretrained models: list, show, verify, pack"),
    "bench": ("viddiff_mini.bench", "benchmarks: data, train, sample, peers"),
    "data": ("viddiff_mini.data.cli", "data tools: export, inspect, filter, cache"),
    "ablate": ("viddiff_mini.ablate", "train each architecture variant on the same budget and compare"),
    "assign": ("viddiff_mini.grading.assign", "write the student handout (no solutions, no hidden tests)"),
    "grade": ("viddiff_mini.grading.grade", "grade a folder of submissions against hidden tests"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="viddiff", description="viddiff_mini: video diffusion models, chapter 11.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name == only:  # only the chosen command pays for its imports
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the chosen command's module: fast start, independent commands.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen is not None and chosen not in COMMANDS:
        print(f"viddiff: unknown command {chosen!r}; choose one of: {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    parser = build_parser(only=chosen)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        print("viddiff: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
