"""The report of ``viddiff ablate``: the markdown table, the plot and the files in ``--out``.

    from viddiff_mini.ablate import run_ablation
    result = run_ablation("tiny")
    print(markdown_table(result))           # the table of section 11.2
    write_report(result, Path("runs/ablate-tiny"))
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from viddiff_mini.utils import atomic_write_bytes


def _fmt_count(n: float) -> str:
    for unit, s in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= s:
            return f"{n / s:.2f}{unit}"
    return f"{n:.0f}"


def markdown_table(result: dict) -> str:
    """The ablation table (markdown) with the notes underneath."""
    from viddiff_mini.analysis.complexity import format_bytes

    head = ("| variant | model | width | params | FLOPs/clip | peak train mem | clips/s | "
            "train loss | eval loss | probe acc |")
    lines = [head, "|" + "---|" * 10]
    n = result["config"].get("sample_n") or 0
    for r in result["rows"]:
        p = r["probe_accuracy"]
        # +- one binomial standard error over the n samples: differences smaller than
        # about two of these are sampling noise, not architecture
        probe = "n/a" if p is None else f"{100 * p:.1f}%" + (
            f" ±{100 * math.sqrt(max(p * (1 - p), 0.25 / n) / n):.0f}" if n else "")
        same = f" (= {r['same_as']})" if r.get("same_as") else ""
        width = f"{r['width']} (GRU {r['hidden']})" if r.get("hidden") else f"{r['width']}"
        lines.append(f"| {r['variant']}{same} | {r['model']} | {width} | "
                     f"{_fmt_count(r['params'])} ({r['param_ratio']:.2f}x) | "
                     f"{_fmt_count(r['flops_per_clip'])} | {format_bytes(r['peak_train_bytes'])} | "
                     f"{r['clips_per_s']:.1f} | {r['train_loss']:.4f} | {r['eval_loss']:.4f} | "
                     f"{probe} |")
    cfg = result["config"]
    text = [f"# viddiff ablate — preset {result['preset']}", "",
            f"{cfg['frames']}x{cfg['size']}x{cfg['size']} clips, {cfg['num_classes']} classes, "
            f"{cfg['clips']} training clips, batch {cfg['batch']}, {cfg['steps']} steps, "
            f"target {cfg['target_params']:,} parameters, device {cfg['device']}"
            + (f", in {cfg['latent']}'s latent space" if cfg.get("latent") else "") + ".",
            f"Took {result.get('seconds', 0) / 60:.1f} minutes in all (training, eval loss, "
            f"sampling and the probe for every variant).", "",
            *lines]
    if not result.get("complete", True):
        finished = {r["variant"] for r in result["rows"]}
        missing = [v for v in result["variants"] if v not in finished]
        text += ["", f"Partial: {len(result['rows'])} of {len(result['variants'])} variants "
                     f"so far (missing {', '.join(missing)}); `--resume` finishes it."]
    if n and any(r["probe_accuracy"] is not None for r in result["rows"]):
        text += ["", f"probe acc: the share of {n} samples per variant whose class the probe "
                     f"names, ± one binomial standard error (sampling noise)."]
    if result["notes"]:
        text += ["", "Notes:", *[f"- {n}" for n in result["notes"]]]
    return "\n".join(text) + "\n"


def plot_result(result: dict, path: Path) -> None:
    """One bar per variant in each panel: eval loss, probe accuracy (when measured),
    throughput, FLOPs per clip."""
    # the Figure API draws without pyplot: no backend switch, so a notebook that calls
    # this keeps showing its own figures inline
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    rows = result["rows"]
    names = [r["variant"] for r in rows]
    panels = [("eval_loss", "held-out loss (lower is better)"),
              ("clips_per_s", "training clips / s"), ("flops_per_clip", "FLOPs per clip")]
    if any(r.get("probe_accuracy") is not None for r in rows):
        ceiling = result.get("probe_real_accuracy")
        panels.insert(1, ("probe_accuracy", "probe accuracy of samples (%)"
                          + (f"; real clips {100 * ceiling:.0f}%" if ceiling else "")))
    fig = Figure(figsize=(4.3 * len(panels), 0.32 * len(rows) + 1.8))
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        scale = 100 if key == "probe_accuracy" else 1
        ax.barh(range(len(rows)), [scale * (r[key] or 0) for r in rows], color="tab:blue")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        if key == "probe_accuracy":
            ax.set_xlim(0, 100)  # 10% must look like 10%, not like the best possible
        if key == "flops_per_clip":
            ax.set_xscale("log")
            # bars start at the left edge: a few-% difference must not look like 10x
            vals = [r[key] for r in rows]
            ax.set_xlim(min(vals) / 4, max(vals) * 1.5)
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
    axes[0].set_yticks(range(len(rows)))
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"viddiff ablate ({result['preset']}): matched parameters "
                 f"~{_fmt_count(result['config']['target_params'])}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(result: dict, out: Path) -> dict[str, Path]:
    """``ablation.json``, ``ablation.md``, ``ablation.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "ablation.json", "md": out / "ablation.md",
             "png": out / "ablation.png"}
    atomic_write_bytes(paths["json"], json.dumps(result, indent=2, default=str).encode())
    atomic_write_bytes(paths["md"], markdown_table(result).encode())
    plot_result(result, paths["png"])
    return paths


