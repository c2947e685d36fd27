"""Pretrained models shipped in the package, each with a model card.

    from viddiff_mini import pretrained
    pretrained.names()                          # ['msh-ae', 'msh-class8', ...]
    model, diffusion, cfg = pretrained.load("msh-class8")
    ae = pretrained.load("msh-ae")              # the autoencoder of the latent route

    viddiff pretrained list                     # every card
    viddiff sample msh-class8 --class MoveLeftSquare --out x.gif
    viddiff eval msh-class8

Each model is two files in this folder: ``NAME.pt`` (weights, loaded with
``weights_only=True``) and ``NAME.json``, its card: what it was trained on (data, classes,
resolution), how (the recipe: the exact command that reproduces it, steps, CPU time,
machine), what it scores (measured metrics with the command that measured them) and the
SHA-256 of the weights. Weights whose hash does not match their card are refused: a card
describes exactly one file.

Cards are written by ``viddiff pretrained pack RUN NAME`` from a finished run folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from viddiff_mini.utils import atomic_torch_save, atomic_write_bytes, safe_torch_load

HERE = Path(__file__).parent


def _cards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(HERE.glob("*.json"))}


def names(kind: str | None = None) -> list[str]:
    """Shipped model names (``kind``: "generator" | "autoencoder" | None for all)."""
    return [n for n, c in _cards().items() if kind is None or c.get("kind") == kind]


def card(name: str) -> dict[str, Any]:
    """The model card of ``name`` (a dict); unknown names list the valid ones."""
    cards = _cards()
    if name not in cards:
        raise ValueError(f"pretrained model {name!r} unknown; shipped models: "
                         f"{', '.join(cards) or '(none)'}")
    return cards[name]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_path(name: str) -> Path:
    """The verified weights file of ``name``: refused when its SHA-256 is not the card's."""
    c = card(name)
    path = HERE / c["file"]
    if not path.exists():
        raise FileNotFoundError(f"pretrained {name!r}: weights file {path} is missing "
                                f"(the card expects it beside {name}.json)")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size, c["sha256"])
    if key in _VERIFIED:  # hashed already, and the file has not changed since
        return path
    digest = sha256(path)
    if digest != c["sha256"]:
        raise ValueError(f"pretrained {name!r}: {path} has SHA-256 {digest[:16]}... but its "
                         f"card says {c['sha256'][:16]}...; the file is not the one the card "
                         f"describes (re-install the package or re-pack the model)")
    _VERIFIED.add(key)
    return path


# files whose hash matched, keyed by (path, mtime, size, expected hash): a sampler resolves
# the autoencoder several times per call; a changed file is hashed (and judged) again
_VERIFIED: set[tuple] = set()


def load(name: str, device: torch.device | str | None = None):
    """A shipped model by name: ``(model, diffusion, cfg)`` for a generator (EMA weights,
    eval mode), the :class:`VideoAutoencoder` for an autoencoder."""
    c = card(name)
    path = weights_path(name)
    if c["kind"] == "autoencoder":
        from viddiff_mini.train_ae import load_autoencoder
        return load_autoencoder(path, device=device or "cpu")
    from viddiff_mini.train import load_run
    return load_run(path, device=device)


# ============================================================================ packing
def pack(run: str | Path, name: str, card_fields: dict[str, Any], kind: str = "generator",
         half: bool = False, dest: Path = HERE) -> dict[str, Any]:
    """Write ``dest/NAME.pt`` and ``dest/NAME.json`` from a finished run folder.

    A generator keeps only its config and EMA weights (no optimizer state); an autoencoder
    its ``autoencoder.pt``. ``half`` stores floating weights as fp16 (they are cast back
    to fp32 on load). ``card_fields`` (recipe, metrics, ...) go into the card as given.
    """
    run = Path(run)
    if kind == "autoencoder":
        from viddiff_mini.train_ae import AE_FILE
        state = safe_torch_load(run / AE_FILE if run.is_dir() else run)
        if half:
            state["state_dict"] = {k: v.half() if v.is_floating_point() else v
                                   for k, v in state["state_dict"].items()}
    else:
        full = safe_torch_load(run / "checkpoint.pt" if run.is_dir() else run)
        weights = full["ema"]
        if half:
            weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
        # the same keys as a run checkpoint, so load_run reads it; "model" = EMA weights
        state = {"config": full["config"], "ema": weights, "step": full["step"]}
    path = dest / f"{name}.pt"
    atomic_torch_save(state, path)
    c = {"name": name, "kind": kind, "file": path.name, "sha256": sha256(path),
         "bytes": path.stat().st_size, "dtype": "float16" if half else "float32"}
    if kind == "generator":
        cfg = full["config"]
        c.update(classes=cfg.get("classes") or cfg["num_classes"], frames=cfg["frames"],
                 size=cfg["size"], latent=cfg.get("latent", ""), model=cfg["model"],
                 conditions=cfg["conditions"], steps=full["step"])
    summary_path = run / "summary.json"
    if summary_path.exists():
        c["training_summary"] = json.loads(summary_path.read_text())
    c.update(card_fields)
    atomic_write_bytes(dest / f"{name}.json", json.dumps(c, indent=2).encode())
    return c


# ============================================================================ CLI
def format_card(c: dict[str, Any]) -> str:
    lines = [f"{c['name']}  ({c['kind']}, {c['bytes'] / 1e6:.1f} MB {c['dtype']}, "
             f"sha256 {c['sha256'][:12]}...)"]
    for key in ("description", "data", "classes", "frames", "size", "latent", "recipe",
                "steps", "cpu_time", "machine", "metrics", "metrics_command", "limitations"):
        if key in c and c[key] not in ("", None, [], {}):
            v = c[key]
            if isinstance(v, dict):
                v = ", ".join(f"{k}={x:.3g}" if isinstance(x, float) else f"{k}={x}"
                              for k, x in v.items())
            elif isinstance(v, list):
                v = f"{len(v)}: " + ", ".join(map(str, v))
            lines.append(f"  {key:<16} {v}")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show", "verify", "pack"],
                   help="list: every card; show NAME: one card as JSON; verify: check every "
                        "file's hash; pack RUN NAME: ship a finished run")
    p.add_argument("args", nargs="*", help="show: NAME; pack: RUN NAME")
    p.add_argument("--kind", default="generator", help="pack: generator | autoencoder")
    p.add_argument("--card", help="pack: JSON file with the card's fields (recipe, metrics ...)")
    p.add_argument("--half", action="store_true", help="pack: store fp16 weights")


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            if not names():
                print("no pretrained models shipped")
            for n in names():
                print(format_card(card(n)) + "\n")
        elif args.action == "show":
            if len(args.args) != 1:
                raise ValueError("show: expected one NAME")
            print(json.dumps(card(args.args[0]), indent=2))
        elif args.action == "verify":
            for n in names():
                weights_path(n)
                print(f"{n}: ok")
        else:
            if len(args.args) != 2:
                raise ValueError("pack: expected RUN NAME")
            fields = json.loads(Path(args.card).read_text()) if args.card else {}
            c = pack(args.args[0], args.args[1], fields, kind=args.kind, half=args.half)
            print(format_card(c))
    except (ValueError, FileNotFoundError) as e:
        print(f"viddiff pretrained: {e}", file=sys.stderr)
        return 1
    return 0
