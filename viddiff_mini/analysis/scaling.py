"""A video scaling-law sweep in miniature (11.2.5: "视频的缩放定律").

Train video DiTs of a few widths on the same data, count the FLOPs of every training step
with ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward), and record a held-out
diffusion loss at fixed compute budgets. The best loss reached at each budget across the
widths is the *compute frontier*; :func:`fit_power_law` fits ``L(C) = a * C^(-b)`` to it.

Everything is deterministic (seeded data order, init, diffusion times and noise), and the
held-out loss uses fixed times and noise on fixed test clips, so two runs of the same sweep
give the same numbers on the same machine. Sizes are tiny (pixel clips of 8x16x16): the
point is the method and the shape of the curves, not numbers comparable with published
scaling laws.

    from viddiff_mini.analysis.scaling import scaling_sweep
    result = scaling_sweep(widths=(16, 32, 64), max_flops=2e12)   # minutes on one CPU thread

``scripts/scaling_sweep.py`` runs it and stores ``results/scaling/dit-sweep.json``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from viddiff_mini.diffusion import Diffusion

CPU_CLASSES = ["MoveLeftSquare", "MoveRightSquare", "MoveUpSquare", "MoveDownSquare",
               "BounceSquare", "ApproachSquare", "BlinkSquare", "PanLeftSquare"]


def count_train_flops(model: torch.nn.Module, diffusion: Diffusion, x0: torch.Tensor,
                      cond: dict) -> int:
    """FLOPs of one training step (loss forward + backward) of ``model`` on the batch
    ``x0`` (b, c, t, h, w), counted by ``FlopCounterMode`` (2 per multiply-add) under the
    math attention backend (the fused kernels are not counted on every device)."""
    from torch.utils.flop_counter import FlopCounterMode

    from viddiff_mini.analysis.complexity import math_sdpa

    model.zero_grad(set_to_none=True)
    with math_sdpa(), FlopCounterMode(display=False) as counter:
        loss = diffusion.loss(model, x0, cond, generator=torch.Generator().manual_seed(0))
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def _clips(names: list[str], split: str, per_class: int, frames: int, size: int):
    from viddiff_mini.data import synthetic as S
    idx, labels = [], []
    for label, name in enumerate(names):
        for k in range(per_class):
            idx.append(S.find_clip(name, k, split=split))
            labels.append(label)
    video = S.render_batch(idx, frames=frames, size=size)["video"]
    return video, torch.tensor(labels)


def budgets_between(max_flops: float, n: int = 4, factor: float = 2.0) -> list[float]:
    """n compute budgets ``max_flops / factor^k`` (ascending)."""
    return sorted(max_flops / factor ** k for k in range(n))


def scaling_sweep(widths=(16, 32, 64), depth: int = 2, heads: int = 2, max_flops: float = 2e12,
                  n_budgets: int = 4, frames: int = 8, size: int = 16, batch: int = 8,
                  train_per_class: int = 48, eval_per_class: int = 4, lr: float = 1e-3,
                  classes: list[str] | None = None, seed: int = 0, log=None) -> dict[str, Any]:
    """Train one DiT per width until ``max_flops`` training FLOPs; evaluate the held-out loss
    whenever the cumulative FLOPs pass one of ``n_budgets`` budgets (max_flops / 2^k).

    Returns a JSON-able dict: the settings, one row per width (params, FLOPs per step,
    ``points``: [{budget, step, flops, eval_loss, seconds}]), the frontier (best eval loss
    per budget and which width reached it) and the power-law fit of the frontier."""
    from viddiff_mini.models import build_model

    classes = list(classes or CPU_CLASSES)
    torch.manual_seed(seed)
    train_x, train_y = _clips(classes, "train", train_per_class, frames, size)
    eval_x, eval_y = _clips(classes, "test", eval_per_class, frames, size)
    diffusion = Diffusion(schedule="cosine", objective="v")
    g = torch.Generator().manual_seed(seed + 1)
    eval_t = torch.linspace(0.05, 0.95, len(eval_x))[torch.randperm(len(eval_x), generator=g)]
    eval_noise = torch.randn(eval_x.shape, generator=g)
    budgets = budgets_between(max_flops, n_budgets)

    def eval_loss(model) -> float:
        model.eval()
        with torch.no_grad():
            out = diffusion.loss(model, eval_x, {"label": eval_y}, t=eval_t, noise=eval_noise)
        model.train()
        return float(out)

    rows = []
    for width in widths:
        torch.manual_seed(seed)
        model = build_model("dit", in_channels=3, depth=depth, dim=width, heads=heads,
                            patch=(1, 2, 2), num_classes=len(classes))
        params = sum(p.numel() for p in model.parameters())
        xb, yb = train_x[:batch], train_y[:batch]
        step_flops = count_train_flops(model, diffusion, xb, {"label": yb})
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        order = torch.Generator().manual_seed(seed + 2)
        dg = torch.Generator().manual_seed(seed + 3)
        points, step, t0 = [], 0, time.perf_counter()
        todo = list(budgets)
        while todo:
            pick = torch.randint(len(train_x), (batch,), generator=order)
            loss = diffusion.loss(model, train_x[pick], {"label": train_y[pick]}, generator=dg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            while todo and step * step_flops >= todo[0]:
                points.append({"budget": todo.pop(0), "step": step, "flops": step * step_flops,
                               "eval_loss": eval_loss(model),
                               "seconds": round(time.perf_counter() - t0, 2)})
                if log:
                    log(f"width {width:4d}: {points[-1]}")
        rows.append({"width": width, "depth": depth, "heads": heads, "params": params,
                     "flops_per_step": step_flops, "points": points})

    frontier, fit = frontier_and_fit(rows)
    return {"settings": {"widths": list(widths), "depth": depth, "heads": heads,
                         "max_flops": max_flops, "budgets": budgets, "frames": frames,
                         "size": size, "batch": batch, "train_clips": len(train_x),
                         "eval_clips": len(eval_x), "lr": lr, "classes": classes,
                         "seed": seed, "objective": "v", "schedule": "cosine",
                         "patch": [1, 2, 2]},
            "rows": rows, "frontier": frontier, "fit": fit,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def frontier_and_fit(rows: list[dict]) -> tuple[list[dict], dict]:
    """The compute frontier (best eval loss at each budget, and which width reached it) of
    sweep rows that share their budgets, and the power-law fit of that frontier."""
    budgets = [p["budget"] for p in rows[0]["points"]]
    frontier = []
    for i, budget in enumerate(budgets):
        best = min(rows, key=lambda r: r["points"][i]["eval_loss"])
        frontier.append({"budget": budget, "eval_loss": best["points"][i]["eval_loss"],
                         "width": best["width"], "params": best["params"]})
    a, b = fit_power_law([f["budget"] for f in frontier], [f["eval_loss"] for f in frontier])
    return frontier, {"a": a, "b": b, "form": "eval_loss = a * flops^-b"}


def merge_sweeps(old: dict, new: dict) -> dict:
    """One sweep from two runs with the same settings but different widths (each width is
    trained independently and deterministically, so this equals one run over all widths)."""
    keep = ("depth", "heads", "max_flops", "budgets", "frames", "size", "batch",
            "train_clips", "eval_clips", "lr", "classes", "seed")
    diff = [k for k in keep if old["settings"].get(k) != new["settings"].get(k)]
    if diff:
        raise ValueError(f"merge_sweeps: the sweeps differ in {diff}")
    rows = {r["width"]: r for r in old["rows"]}
    rows.update({r["width"]: r for r in new["rows"]})
    rows = [rows[w] for w in sorted(rows)]
    frontier, fit = frontier_and_fit(rows)
    out = dict(old, rows=rows, frontier=frontier, fit=fit)
    out["settings"] = dict(old["settings"], widths=[r["width"] for r in rows])
    out["seconds"] = round(old.get("seconds", 0) + new.get("seconds", 0), 1)
    return out


def fit_power_law(flops, loss) -> tuple[float, float]:
    """Least-squares fit of log L = log a - b log C; returns (a, b)."""
    x = torch.tensor([math.log(float(c)) for c in flops], dtype=torch.float64)
    y = torch.tensor([math.log(float(v)) for v in loss], dtype=torch.float64)
    if len(x) < 2:
        raise ValueError("fit_power_law: need at least two (flops, loss) points")
    xm, ym = x.mean(), y.mean()
    slope = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
    return float(math.exp(float(ym) - slope * float(xm))), -slope


def plot_sweep(result: dict, ax=None):
    """Held-out loss vs training FLOPs, one line per width, the frontier and its fit."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for row in result["rows"]:
        ax.plot([p["flops"] for p in row["points"]], [p["eval_loss"] for p in row["points"]],
                "o-", label=f"width {row['width']} ({row['params'] / 1e3:.0f}k params)")
    c = [f["budget"] for f in result["frontier"]]
    ax.plot(c, [f["eval_loss"] for f in result["frontier"]], "k*", ms=12, label="frontier")
    fit = result["fit"]
    ax.plot(c, [fit["a"] * x ** -fit["b"] for x in c], "k:",
            label=f"fit  L = {fit['a']:.3g} C^-{fit['b']:.3f}")
    ax.set(xscale="log", yscale="log", xlabel="training FLOPs (forward + backward)",
           ylabel="held-out diffusion loss", title="DiT width sweep at fixed compute")
    ax.legend(fontsize=8)
    return ax
