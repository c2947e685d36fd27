"""Re-measure every shipped pretrained model and compare with the numbers on its card.

    python scripts/reproduce_cards.py                      # every card (minutes per card)
    python scripts/reproduce_cards.py --names msh-class8   # one card
    python scripts/reproduce_cards.py --quick              # plumbing only: tiny settings,
                                                           # no comparison (used by a test)

A generator card carries the evaluation it was measured with (``"eval"``: samples per
class, sampler steps, guidance, seed, FVD on/off); this script runs the same
``viddiff_mini.evaluate.evaluate_run`` on the shipped weights and prints card vs
re-measured for every metric on the card. Sampling is seeded, so on the same CPU and torch
the numbers repeat exactly; another thread count or BLAS may move a sample or two, hence the
tolerance (``--tol``, absolute, default 0.05 on accuracies and fractions; 10% relative on
FVD-probe and other unbounded numbers). An autoencoder card is re-measured with
``evaluate_autoencoder`` on the same 256 held-out clips, and its ``round_trip_*`` metrics
with ``metrics.floors.round_trip_floors``.

Writes ``results/pretrained/reproduce.json`` (one row per card: card value, measured value,
ok) and exits 1 when any metric is out of tolerance.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from viddiff_mini import pretrained  # noqa: E402

# card metric name -> key in the measured report (autoencoder cards use other names)
AE_KEYS = {"psnr_db": "psnr_db", "object_psnr_db": "object_psnr_db",
           "probe_accuracy_reconstructed_101way": "probe_accuracy_reconstructed",
           "probe_accuracy_real_101way": "probe_accuracy_real"}
BOUNDED = ("accuracy", "ceiling", "persistence", "drift", "_acc", "probe", "rel_error")  # fractions


def within(name: str, card_value: float, measured: float, tol: float) -> bool:
    if any(word in name for word in BOUNDED):
        return abs(card_value - measured) <= tol
    if name.endswith("_db"):
        return abs(card_value - measured) <= 0.5
    return abs(card_value - measured) <= 0.1 * abs(card_value) + 1e-9


def measure(name: str, quick: bool) -> dict:
    card = pretrained.card(name)
    if card["kind"] == "autoencoder":
        from viddiff_mini.train_ae import evaluate_autoencoder
        ae = pretrained.load(name)
        report = evaluate_autoencoder(ae, n=8 if quick else 256, frames=card["frames"],
                                      size=card["size"])
        out = {k: report[v] for k, v in AE_KEYS.items() if v in report}
        if any(k.startswith("round_trip_") for k in card.get("metrics", {})):
            # the control yardsticks on its round trip of real clips (metrics/floors.py)
            from viddiff_mini.metrics.floors import round_trip_floors
            small = dict(n_text=4, n_paths=4, n_physics=1, n_probe=1) if quick else {}
            floors = round_trip_floors(name, **small)
            out.update({f"round_trip_{k}": v for k, v in floors.items()
                        if not k.startswith("real_") and isinstance(v, float)})
        return out
    from viddiff_mini.evaluate import evaluate_run
    settings = dict(card.get("eval", {}))
    if quick:
        # one held-out clip of every class, so every control metric (gravity needs a
        # bounce or throw clip) is produced
        classes = card.get("classes")
        settings.update(n_per_class=1, steps=2,
                        n_controls=len(classes) if isinstance(classes, list) else 2)
    report = evaluate_run(name, progress=False, **settings)
    # a control generator's card names its control metrics without the "control/" prefix
    report.update({k.split("/", 1)[1]: v for k, v in list(report.items())
                   if k.startswith("control/") and k.split("/", 1)[1] not in report})
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--names", help="comma-separated card names (default: every card)")
    p.add_argument("--tol", type=float, default=0.05, help="absolute tolerance on fractions")
    p.add_argument("--quick", action="store_true", help="tiny settings, no comparison")
    p.add_argument("--out", default=str(ROOT / "results" / "pretrained" / "reproduce.json"))
    args = p.parse_args()
    names = args.names.split(",") if args.names else pretrained.names()
    rows, bad = [], 0
    for name in names:
        card = pretrained.card(name)
        t0 = time.perf_counter()
        report = measure(name, args.quick)
        seconds = time.perf_counter() - t0
        print(f"\n{name}  ({seconds:.0f} s)")
        for metric, value in card.get("metrics", {}).items():
            if not isinstance(value, (int, float)) or metric not in report:
                continue
            got = report[metric]
            ok = None if args.quick else within(metric, value, got, args.tol)
            bad += ok is False
            rows.append({"name": name, "metric": metric, "card": value, "measured": got,
                         "ok": ok, "seconds": round(seconds, 1)})
            flag = "" if ok is None else ("ok" if ok else "DIFFERENT")
            print(f"  {metric:<36} card {value:>9.4g}   measured {got:>9.4g}   {flag}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"quick": args.quick, "tol": args.tol, "rows": rows}, indent=2))
    print(f"\n{len(rows)} metrics, {bad} out of tolerance -> {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
