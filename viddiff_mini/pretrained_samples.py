"""Samples of a shipped generator for the lesson notebooks, drawn once and stored.

    from viddiff_mini.pretrained_samples import class_samples
    s = class_samples("msh-class8")          # 2 clips per class, the card's eval sampler settings
    s["video"]      # (n, 3, t, h, w) float in [-1, 1] (decoded through msh-ae for a latent run)
    s["labels"]     # (n,) run labels (index into s["classes"])
    s["source"]     # "stored" | "cache" | "sampled": where this call got them

Drawing 16 clips of ``msh-class8`` with its evaluation settings takes about a minute on one
CPU thread, longer than a whole fast-profile notebook may take. So the samples are stored:

1. ``results/pretrained/NAME-lesson-samples.pt`` (committed with the repository) is used when
   its recorded weights SHA-256 and sampling arguments are exactly those asked for;
2. else a per-user cache (``$VIDDIFF_CACHE`` or ``~/.cache/viddiff_mini``), same rule;
3. else the generator samples now (and fills the cache).

Stored clips are uint8 (like a video file): a float sample differs from its stored copy by at
most 1/255 of the [-1, 1] range. Weights that change (a retrained model, a new card) have a
new SHA-256, so old samples are never shown for new weights: ``refresh_stored(name)`` (run by
``scripts/execute_lessons.py``) redraws the committed file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
STORED_DIR = ROOT / "results" / "pretrained"
# the generators whose samples the notebooks show (and so are stored with the repository)
LESSON_GENERATORS = ("msh-class8",)
# None: the settings of the model card's evaluation ("eval"), so the samples shown are drawn
# like the ones its metrics were measured on (fallback: DDIM 50 steps, guidance 2)
DEFAULTS = {"per_class": 2, "steps": None, "guidance": None, "seed": 0, "sampler": None}
FALLBACK = {"steps": 50, "guidance": 2.0, "sampler": "ddim"}


def _cache_dir() -> Path:
    return Path(os.environ.get("VIDDIFF_CACHE") or Path.home() / ".cache" / "viddiff_mini")


def stored_path(name: str) -> Path:
    return STORED_DIR / f"{name}-lesson-samples.pt"


def _key(name: str, per_class: int, steps: int | None, guidance: float | None, seed: int,
         sampler: str | None) -> dict:
    from viddiff_mini import pretrained
    card = pretrained.card(name)
    ev = card.get("eval") or {}
    steps = steps if steps is not None else ev.get("steps", FALLBACK["steps"])
    guidance = guidance if guidance is not None else ev.get("guidance", FALLBACK["guidance"])
    sampler = sampler if sampler is not None else ev.get("sampler", FALLBACK["sampler"])
    return {"name": name, "sha256": card["sha256"], "per_class": int(per_class),
            "steps": int(steps), "guidance": float(guidance), "seed": int(seed),
            "sampler": sampler}


def _read(path: Path, key: dict) -> dict | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a broken cache file is redrawn, never fatal
        return None
    if not isinstance(state, dict) or state.get("key") != key:
        return None
    return state


def _draw(key: dict) -> dict:
    """Sample ``per_class`` clips of every class of the generator (class-major order)."""
    from viddiff_mini import pretrained
    from viddiff_mini.train import sample_grid

    model, diffusion, cfg = pretrained.load(key["name"])
    labels = torch.arange(cfg.num_classes).repeat_interleave(key["per_class"])
    t0 = time.perf_counter()
    video = sample_grid(model, diffusion, cfg, torch.device("cpu"), len(labels), seed=key["seed"],
                        labels=labels, steps=key["steps"], guidance=key["guidance"],
                        sampler=key["sampler"])
    seconds = time.perf_counter() - t0
    u8 = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return {"key": key, "video_u8": u8, "labels": labels,
            "classes": list(cfg.classes or [str(i) for i in range(cfg.num_classes)]),
            "seconds": seconds, "threads": torch.get_num_threads(),
            "torch": str(torch.__version__)}


def _write(path: Path, state: dict) -> None:
    from viddiff_mini.utils import atomic_torch_save
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, path)


def class_samples(name: str = "msh-class8", per_class: int = DEFAULTS["per_class"],
                  steps: int | None = DEFAULTS["steps"], guidance: float | None = DEFAULTS["guidance"],
                  seed: int = DEFAULTS["seed"], sampler: str | None = DEFAULTS["sampler"],
                  cache: bool = True) -> dict[str, Any]:
    """``per_class`` samples of every class of the shipped class-conditional generator
    ``name`` (see the module docstring for where they come from).

    Returns ``video`` (n, 3, t, h, w) float in [-1, 1], ``labels`` (n,) run labels,
    ``classes`` (names), ``key`` (with the sampler, steps and guidance used), ``seconds`` (the sampling time when they were drawn, on
    ``threads`` CPU threads), ``source`` and ``key`` (weights SHA-256 + arguments)."""
    key = _key(name, per_class, steps, guidance, seed, sampler)
    state, source = _read(stored_path(name), key), "stored"
    cache_file = _cache_dir() / (f"{name}-{key['sha256'][:12]}-{per_class}x{key['steps']}"
                                 f"-g{key['guidance']:g}-s{seed}-{key['sampler']}.pt")
    if state is None and cache:
        state, source = _read(cache_file, key), "cache"
    if state is None:
        state, source = _draw(key), "sampled"
        if cache:
            try:
                _write(cache_file, state)
            except OSError:  # a read-only home: sample again next time
                pass
    out = dict(state)
    out["video"] = out.pop("video_u8").float() / 127.5 - 1
    out["source"] = source
    return out


def refresh_stored(name: str = "msh-class8", **kwargs) -> tuple[bool, Path]:
    """Redraw ``results/pretrained/NAME-lesson-samples.pt`` when it does not match the
    current weights (or the default arguments); returns (redrawn, path)."""
    args = {**DEFAULTS, **kwargs}
    key = _key(name, args["per_class"], args["steps"], args["guidance"], args["seed"],
               args["sampler"])
    path = stored_path(name)
    if _read(path, key) is not None:
        return False, path
    _write(path, _draw(key))
    return True, path


def stored_result(relpath: str) -> dict[str, Any] | None:
    """A stored JSON result of the repository (``results/RELPATH``), or None where this
    copy has none (the student handout of ``viddiff assign`` leaves ``results/`` out): the
    notebooks then say so instead of stopping Run-All."""
    import json
    path = ROOT / "results" / relpath
    return json.loads(path.read_text()) if path.is_file() else None


def stored_eval(name: str = "msh-class8") -> dict[str, Any] | None:
    """The stored evaluation of a shipped generator (``results/pretrained/NAME-eval.json``,
    written by ``viddiff eval NAME``): probe accuracy, per-class numbers, colour drift, mask
    persistence, flicker, warp error, FVD-probe, each with the real clips' reference value;
    None where this copy has no ``results/`` (``viddiff eval NAME`` measures it again)."""
    return stored_result(f"pretrained/{name}-eval.json")


def generate(name: str = "msh-class8", labels=None, steps: int = 50, guidance: float | None = None,
             seed: int = 0, **sample_kwargs) -> torch.Tensor:
    """Sample the shipped generator ``name`` now (no storage): clips (n, 3, t, h, w) in
    [-1, 1] for run ``labels`` (default: one per class), decoded through its autoencoder for
    a latent model. ``guidance`` None: the card's evaluation guidance (else the model's
    config). ``sample_kwargs`` go to ``Diffusion.sample`` (e.g. ``x0_hook``, which then acts
    on the *latent* clean-video estimate of a latent model)."""
    from viddiff_mini import pretrained
    from viddiff_mini.train import sample_grid

    model, diffusion, cfg = pretrained.load(name)
    labels = torch.arange(cfg.num_classes) if labels is None else torch.as_tensor(labels)
    if guidance is None:
        guidance = (pretrained.card(name).get("eval") or {}).get("guidance", cfg.guidance)
    with torch.no_grad():
        return sample_grid(model, diffusion, cfg, torch.device("cpu"), len(labels), seed=seed,
                           labels=labels, steps=steps, guidance=guidance, **sample_kwargs)
