#!/usr/bin/env python3
"""Re-execute the lesson notebooks in place, so that they are readable without running them.

    python scripts/execute_lessons.py                      # every lessons/*.ipynb, full profile
    python scripts/execute_lessons.py lessons/11_1_3_motion.ipynb --fast
    python scripts/execute_lessons.py --check              # are the committed notebooks executed?
    python scripts/execute_lessons.py --fast --answers stubs   # what the committed notebooks hold

Before running anything it makes sure the stored samples of the shipped generators
(``results/pretrained/NAME-lesson-samples.pt``, read by the notebooks) match the current
weights: after a retrained ``msh-class8`` it redraws them (about a minute on one thread)
and says so. ``--no-refresh`` skips that step.

Each notebook runs top to bottom in a fresh kernel of this Python environment (like a
student's Run-All), with ``VIDDIFF_ANSWERS=stubs`` by default: the exercise cells then show
"implement 11.x.yz to see yours here" and the graded checks 0 points, so the stored outputs
reveal no answer. Outputs and execution counts are written back into the notebook; its
metadata records how it was run (``metadata.viddiff.executed``). A notebook whose lesson
cells raise is not written (exit code 1). ``--threads`` pins torch/OpenMP threads (default 1,
so that timings are comparable across machines; say so when you quote them).

Notebooks larger than 3 MB after execution are reported (animations should stay small).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install -e .` too

from viddiff_mini.lessons_tools import execute_notebook, is_executed, lesson_env  # noqa: E402

MAX_BYTES = 3 * 2**20


def refresh_samples(threads: int) -> None:
    """Redraw the stored lesson samples of every generator the notebooks show
    (``LESSON_GENERATORS``) whose weights changed since they were drawn (keyed by the
    weights' SHA-256)."""
    import torch

    from viddiff_mini import pretrained
    from viddiff_mini.pretrained_samples import LESSON_GENERATORS, refresh_stored

    torch.set_num_threads(threads)
    for name in pretrained.names(kind="generator"):
        if name not in LESSON_GENERATORS:
            continue
        t0 = time.perf_counter()
        redrawn, path = refresh_stored(name)
        print(f"{name}: stored lesson samples "
              + (f"redrawn for the current weights in {time.perf_counter() - t0:.0f}s -> "
                 f"{path.relative_to(ROOT)}" if redrawn else "up to date"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", help="default: every lessons/*.ipynb")
    p.add_argument("--answers", default="stubs",
                   help="stubs (default: outputs reveal no answers), solutions, or a folder")
    p.add_argument("--fast", action="store_true", help="VIDDIFF_FAST=1 (small sizes, seconds)")
    p.add_argument("--threads", type=int, default=1, help="OMP/torch threads (default 1)")
    p.add_argument("--out", default=None, help="write executed copies here instead of in place")
    p.add_argument("--cell-timeout", type=float, default=1800, help="seconds per cell")
    p.add_argument("--no-refresh", action="store_true",
                   help="do not redraw stale stored generator samples first")
    p.add_argument("--check", action="store_true",
                   help="only check that every code cell has an execution count; exit 1 if not")
    args = p.parse_args(argv)

    import nbformat

    paths = [Path(x) for x in args.notebooks] or sorted((ROOT / "lessons").glob("*.ipynb"))
    missing = [str(x) for x in paths if not x.is_file()]
    if missing:
        print(f"execute_lessons: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2

    if args.check:
        bad = [x for x in paths if not is_executed(nbformat.read(str(x), as_version=4))]
        for x in bad:
            print(f"not executed: {x.name} (run: python scripts/execute_lessons.py {x})")
        print(f"{len(paths) - len(bad)} of {len(paths)} notebooks executed")
        return 1 if bad else 0

    if not args.no_refresh:
        refresh_samples(args.threads)
    env = lesson_env(args.answers, fast=args.fast, threads=args.threads)
    status = 0
    total = time.perf_counter()
    for path in paths:
        nb = nbformat.read(str(path), as_version=4)
        t0 = time.perf_counter()
        try:
            result = execute_notebook(nb, cwd=path.parent, env=env, cell_timeout=args.cell_timeout)
        except TimeoutError as e:
            print(f"{path.name}: {e}; not written", file=sys.stderr)
            status = 1
            continue
        bad = result.errors_outside()
        if bad:
            print(f"{path.name}: errors in lesson cells, not written:", file=sys.stderr)
            for err in bad:
                print(f"  {err}", file=sys.stderr)
            status = 1
            continue
        nb.metadata.setdefault("viddiff", {})["executed"] = {
            "profile": "fast" if args.fast else "full", "answers": args.answers,
            "threads": args.threads, "seconds": round(result.seconds, 1),
            "cpu_seconds": None if result.cpu_seconds is None else round(result.cpu_seconds, 1),
            "date": _dt.date.today().isoformat()}
        out = Path(args.out) / path.name if args.out else path
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(out))
        size = out.stat().st_size
        slow = sorted(result.cell_seconds.items(), key=lambda kv: -kv[1])[:3]
        cpu = "" if result.cpu_seconds is None else f" ({result.cpu_seconds:.1f} CPU-s in the kernel)"
        print(f"{path.name}: {time.perf_counter() - t0:6.1f}s wall{cpu}, {size / 2**20:.2f} MB"
              f"{'  (over 3 MB!)' if size > MAX_BYTES else ''}; slowest cells "
              + ", ".join(f"#{i} {s:.1f}s" for i, s in slow)
              + (f"; {len(result.errors)} error(s) in exercise cells" if result.errors else ""))
        if size > MAX_BYTES:
            status = status or 1
    print(f"done in {time.perf_counter() - total:.1f}s "
          f"({'fast' if args.fast else 'full'} profile, answers={args.answers}, "
          f"{args.threads} thread(s))")
    return status


if __name__ == "__main__":
    sys.exit(main())
