"""Autoencoders side by side: what each one's round trip of real held-out clips scores on
every yardstick the generator cards use (caption colour, trajectory error, gravity, probe),
beside the raw clips' own scores. A latent generator cannot beat its autoencoder's floor
by much, so this says which controls an autoencoder leaves reachable before any diffusion
model is trained on it (``viddiff_mini.metrics.floors``).

    python scripts/ae_floors.py                       # msh-ae and msh-ae-t1 (~1 min each)
    python scripts/ae_floors.py msh-ae runs/my-ae     # any pretrained names / train-ae runs

Writes ``results/ae-floors.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from viddiff_mini.metrics.floors import round_trip_floors  # noqa: E402

ROWS = [("text_color_acc", "caption colour named (32 cpu-text captions)", "{:.1%}"),
        ("trajectory_error_px", "trajectory error, px (32 cpu-trajectory paths)", "{:.2f}"),
        ("gravity_rel_error", "gravity fit, relative error (36 throw/bounce clips)", "{:.1%}"),
        ("probe_in_run_24", "probe among the 24 cpu-class24 classes", "{:.1%}"),
        ("probe_101way_24", "probe 101-way on those clips", "{:.1%}"),
        ("psnr_db", "PSNR of the round trip, dB (cpu-text clips)", "{:.1f}")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("latents", nargs="*", default=["msh-ae", "msh-ae-t1"],
                   help="pretrained autoencoder names or train-ae run folders")
    p.add_argument("--out", default=str(ROOT / "results" / "ae-floors.json"))
    args = p.parse_args()
    reports = []
    for spec in args.latents:
        t0 = time.perf_counter()
        reports.append(round_trip_floors(spec))
        reports[-1]["seconds"] = round(time.perf_counter() - t0, 1)
    width = max(len(r[1]) for r in ROWS)
    print(f"{'':{width}s}  " + "  ".join(f"{s:>12s}" for s in args.latents) + "  real clips")
    for key, label, fmt in ROWS:
        real = reports[0].get(f"real_{key}")
        print(f"{label:{width}s}  " + "  ".join(f"{fmt.format(r[key]):>12s}" for r in reports)
              + (f"  {fmt.format(real):>10s}" if real is not None else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(reports, indent=2))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
