#!/usr/bin/env python3
"""Mutation check of the graded tests: do they catch plausible student bugs?

    python scripts/mutation_check.py                  # every mutant, a table, caught/total
    python scripts/mutation_check.py --exercise 11.2.1c
    python scripts/mutation_check.py --list           # the mutants, nothing run

Each mutant is one small edit of ``solutions/ex11_*.py`` (exact text -> replacement) that
a student could plausibly make: a sign, an off-by-one, a forgotten step, the wrong axis.
For each, the solutions are copied to a temporary folder, the edit is applied, and the
graded tests of that exercise run on the copy (``--answers=FOLDER --exercise=ID``). A
mutant is *caught* when at least one of those tests fails. Surviving mutants are listed:
either the bug is harmless (say so in :data:`MUTANTS`) or a test is missing.

Exit code: 0 when every mutant is caught, 1 otherwise (2 when a mutant no longer applies,
i.e. the solution changed under it; the instructor test
``tests/exercises/test_meta.py::test_mutants_apply`` checks that quickly).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    exercise: str   # e.g. "11.2.1c": only its graded tests run
    module: str     # "ex11_1" | "ex11_2" | "ex11_3"
    what: str       # the student bug, in words
    old: str        # exact text in solutions/<module>.py (must occur exactly once)
    new: str


MUTANTS: list[Mutant] = [
    # ------------------------------------------------------------------ 11.1.2a
    Mutant("11.1.2a", "ex11_1", "flow counted for t frames instead of t - 1 pairs",
           "flow = b * 2 * (t - 1) * h * w", "flow = b * 2 * t * h * w"),
    Mutant("11.1.2a", "ex11_1", "element size ignored (always float32)",
           "size = torch.empty((), dtype=dtype).element_size()", "size = 4"),
    Mutant("11.1.2a", "ex11_1", "key frame + flow forgets the key frame",
           '"keyframe_flow": (b * c * h * w + flow) * size', '"keyframe_flow": flow * size'),
    Mutant("11.1.2a", "ex11_1", "reconstruction warps the wrong way (+flow)",
           "frames.append(_sample_at(frames[-1], -flow[:, :, i]",
           "frames.append(_sample_at(frames[-1], flow[:, :, i]"),
    Mutant("11.1.2a", "ex11_1", "every frame warps the key frame by one flow (no accumulation)",
           "frames.append(_sample_at(frames[-1], ", "frames.append(_sample_at(keyframe, "),
    Mutant("11.1.2a", "ex11_1", "reconstruction leaves out the key frame (t - 1 frames)",
           "    return torch.stack(frames, dim=2)\n",
           "    return torch.stack(frames[1:] or frames, dim=2)\n"),
    Mutant("11.1.2a", "ex11_1", "nearest-pixel moves (flow rounded) instead of bilinear",
           "-flow[:, :, i].to(keyframe.dtype)", "-flow[:, :, i].round().to(keyframe.dtype)"),
    # ------------------------------------------------------------------ 11.1.4c
    Mutant("11.1.4c", "ex11_1", "one seed for every class (seed, not seed * 1000 + label)",
           "g = torch.Generator().manual_seed(seed * 1000 + label)",
           "g = torch.Generator().manual_seed(seed)"),
    Mutant("11.1.4c", "ex11_1", "seed + label instead of seed * 1000 + label",
           "g = torch.Generator().manual_seed(seed * 1000 + label)",
           "g = torch.Generator().manual_seed(seed + label)"),
    Mutant("11.1.4c", "ex11_1", "picks from the training split",
           'synthetic.split_indices("test", fold)', 'synthetic.split_indices("train", fold)'),
    Mutant("11.1.4c", "ex11_1", "keeps the last n instead of the first n of the permutation",
           "generator=g)[:n_per_class].tolist()", "generator=g)[-n_per_class:].tolist()"),
    Mutant("11.1.4c", "ex11_1", "result not sorted by (label, index)",
           "return sorted(out, key=lambda pair: (pair[1], pair[0]))", "return out"),
    # ------------------------------------------------------------------ 11.2.1c
    Mutant("11.2.1c", "ex11_2", "odd frames not hidden from the input",
           "    x, hidden = _interp_task(videos)\n",
           "    hidden = _interp_task(videos)[1]\n    x = videos\n"),
    Mutant("11.2.1c", "ex11_2", "hides the even frames instead of the odd ones",
           "hidden[1::2] = True", "hidden[0::2] = True"),
    Mutant("11.2.1c", "ex11_2", "hidden loss measured over the whole clip",
           "hid = F.mse_loss(pred[:, :, hidden], videos[:, :, hidden]).item()",
           "hid = F.mse_loss(pred, videos).item()"),
    Mutant("11.2.1c", "ex11_2", "seeded once, not per kind (variants start differently)",
           "    for kind in kinds:\n        torch.manual_seed(seed)\n",
           "    torch.manual_seed(seed)\n    for kind in kinds:\n"),
    Mutant("11.2.1c", "ex11_2", "trained to reproduce the masked input, not the clip",
           "loss = F.mse_loss(net(x), videos)", "loss = F.mse_loss(net(x), x)"),
    Mutant("11.2.1c", "ex11_2", "lr ignored (Adam's default)",
           "opt = torch.optim.Adam(net.parameters(), lr=lr)",
           "opt = torch.optim.Adam(net.parameters())"),
    # ------------------------------------------------------------------ 11.3.3b
    Mutant("11.3.3b", "ex11_3", "x and y swapped (rows vs columns)",
           "d2 = (xx - p[..., 0, None, None]) ** 2 + (yy - p[..., 1, None, None]) ** 2",
           "d2 = (xx - p[..., 1, None, None]) ** 2 + (yy - p[..., 0, None, None]) ** 2"),
    Mutant("11.3.3b", "ex11_3", "strict < radius (the disc's rim left out)",
           "discs = (d2 <= radius**2).any(0)", "discs = (d2 < radius**2).any(0)"),
    Mutant("11.3.3b", "ex11_3", "per frame without the frame-0 discs (vacated area frozen)",
           "return discs | discs[:1]", "return discs"),
    Mutant("11.3.3b", "ex11_3", "radius used as a diameter",
           "discs = (d2 <= radius**2).any(0)", "discs = (d2 <= (radius / 2) ** 2).any(0)"),
    Mutant("11.3.3b", "ex11_3", "union mask = the discs of frame 0 only",
           "    return discs.any(0)\n", "    return discs[0]\n"),
    # ------------------------------------------------------------------ 11.3.4a
    Mutant("11.3.4a", "ex11_3", "heatmap sigma ignored (library default)",
           "concat[0, : tr.shape[0]] = heatmaps(tr, size, sigma)",
           "concat[0, : tr.shape[0]] = heatmaps(tr, size)"),
    Mutant("11.3.4a", "ex11_3", "both objects drawn into one map",
           "concat[0, : tr.shape[0]] = heatmaps(tr, size, sigma)",
           "concat[0, 0] = heatmaps(tr, size, sigma).amax(0)"),
    Mutant("11.3.4a", "ex11_3", "reference image on every frame, no indicator",
           "concat[:, 2:6] = first_frame_maps(reference[:, 0][None], frames)",
           "concat[0, 2:5] = reference[:, 0][:, None]"),
    Mutant("11.3.4a", "ex11_3", "no indicator channel (a black image = no image)",
           "concat[:, 2:6] = first_frame_maps(reference[:, 0][None], frames)",
           "concat[:, 2:6] = first_frame_maps(reference[:, 0][None], frames)\n"
           "        concat[:, 5] = 0"),
    Mutant("11.3.4a", "ex11_3", "concat keep bit = AND of its controls",
           "torch.tensor([trajectory is not None or reference is not None])",
           "torch.tensor([trajectory is not None and reference is not None])"),
    Mutant("11.3.4a", "ex11_3", "style code of the first frame only",
           "vector[0, :STYLE_DIM] = style_code(reference[None].float())[0]",
           "vector[0, :STYLE_DIM] = style_code(reference[None, :, :1].float())[0]"),
    Mutant("11.3.4a", "ex11_3", "the trajectory also written into the vector input",
           "    cond[\"vector\"] = vector\n",
           "    vector[0, 0] += float(concat[0, 0].sum()) * 1e-3\n    cond[\"vector\"] = vector\n"),
    # ------------------------------------------------------------------ 11.3.4b
    Mutant("11.3.4b", "ex11_3", "weights the conditional prediction, not the difference",
           "out = out + w * (model(x_t, t, conds[name]) - f_null)",
           "out = out + w * model(x_t, t, conds[name])"),
    Mutant("11.3.4b", "ex11_3", "every control in conds counts, weighted or not",
           "    for name, w in weights.items():\n        if w == 0:",
           "    for name in conds:\n        w = weights.get(name, 1.0)\n        if w == 0:"),
]


def apply(mutant: Mutant, folder: Path) -> None:
    """Apply ``mutant`` to ``folder/<module>.py`` (a copy of the solutions)."""
    path = folder / f"{mutant.module}.py"
    text = path.read_text(encoding="utf-8")
    n = text.count(mutant.old)
    if n != 1:
        raise LookupError(f"{mutant.exercise} '{mutant.what}': the text to replace occurs {n} "
                          f"times in solutions/{mutant.module}.py (expected once)")
    path.write_text(text.replace(mutant.old, mutant.new), encoding="utf-8")


def run_one(mutant: Mutant, work: Path, timeout: float = 600) -> tuple[bool, str]:
    """(caught, first failing test or a note)."""
    folder = work / "answers"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(ROOT / "solutions", folder)
    apply(mutant, folder)
    report = work / "grade.json"
    report.unlink(missing_ok=True)
    section = ".".join(mutant.exercise.split(".")[:2]).replace(".", "_")
    test_file = ROOT / "tests" / "exercises" / f"test_ex{section}.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VIDDIFF_FAST": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--tb=no",
         str(test_file), f"--answers={folder}", f"--exercise={mutant.exercise}",
         f"--grade-json={report}", "--per-test-timeout=120"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if not report.is_file():
        return True, f"pytest exit {proc.returncode}, no report: {proc.stdout[-300:]}"
    tests = json.loads(report.read_text())["tests"]
    if not tests:
        return False, "no graded test selected"
    failed = [t["nodeid"].split("::")[-1] for t in tests if t["outcome"] != "passed"]
    return bool(failed), (", ".join(failed) if failed else f"all {len(tests)} tests pass")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--exercise", action="append", default=[],
                   help="only mutants of this exercise (prefix allowed); repeatable")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = p.parse_args(argv)
    chosen = [m for m in MUTANTS
              if not args.exercise or any(m.exercise.startswith(e) for e in args.exercise)]
    if args.list:
        for m in chosen:
            print(f"{m.exercise}  {m.what}")
        return 0
    caught = 0
    survivors = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="viddiff_mutants_") as tmp:
        for i, m in enumerate(chosen, 1):
            try:
                ok, note = run_one(m, Path(tmp))
            except LookupError as e:
                print(f"mutation_check: {e}", file=sys.stderr)
                return 2
            caught += ok
            if not ok:
                survivors.append(m)
            print(f"[{i:2d}/{len(chosen)}] {m.exercise}  {'caught ' if ok else 'SURVIVED'}  "
                  f"{m.what}  ({note})", flush=True)
    print(f"\ncaught {caught}/{len(chosen)} mutants in {time.perf_counter() - start:.0f} s")
    for m in survivors:
        print(f"  survived: {m.exercise} {m.what}")
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
