#!/usr/bin/env python3
"""Section 11.2.5's scaling-law sweep in miniature: video DiTs of a few widths trained to the
same compute budgets; held-out loss vs training FLOPs (``torch.utils.flop_counter``).

    python scripts/scaling_sweep.py                      # the stored result (minutes, 1 thread)
    python scripts/scaling_sweep.py --max-flops 2e11 --out /tmp/sweep.json   # a quick look
    python scripts/scaling_sweep.py --widths 16 --add          # add widths to the stored sweep

Writes ``results/scaling/dit-sweep.json`` (read by lessons/11_2_4_6_hierarchy_dit_lightweight)
and a plot next to it. Say the thread count when you quote its times (default 1).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--widths", default="16,32,64", help="DiT widths (comma-separated)")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--max-flops", type=float, default=2e12, help="largest training budget")
    p.add_argument("--budgets", type=int, default=4, help="budgets max/2^k, k < this")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--add", action="store_true",
                   help="merge these widths into the existing --out file (same settings)")
    p.add_argument("--out", default=str(ROOT / "results" / "scaling" / "dit-sweep.json"))
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from viddiff_mini.analysis.scaling import scaling_sweep

    t0 = time.perf_counter()
    result = scaling_sweep(widths=tuple(int(w) for w in args.widths.split(",")),
                           depth=args.depth, max_flops=args.max_flops, n_budgets=args.budgets,
                           log=print)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    cmd = "python scripts/scaling_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    if args.add and out.is_file():
        from viddiff_mini.analysis.scaling import merge_sweeps
        old = json.loads(out.read_text())
        result = merge_sweeps(old, result)
        result["command"] = old.get("command", "") + " ; " + cmd
    else:
        result["command"] = cmd
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    try:
        import matplotlib
        matplotlib.use("Agg")
        from viddiff_mini.analysis.scaling import plot_sweep
        plot_sweep(result).figure.savefig(out.with_suffix(".png"), dpi=100, bbox_inches="tight")
    except ImportError:
        pass
    fit = result["fit"]
    print("frontier: " + ", ".join(f"{f['budget']:.2g} FLOPs -> {f['eval_loss']:.4f} (width "
                                    f"{f['width']})" for f in result["frontier"]))
    print(f"fit: eval_loss = {fit['a']:.3g} * C^-{fit['b']:.3f}; {result['seconds']:.0f}s on "
          f"{args.threads} thread(s); wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
