"""``viddiff ablate``: train every architecture variant of 11.2 on the same budget, compare.

    viddiff ablate --preset tiny                       # all variants, < 1 minute on one core
    viddiff ablate --preset gpu --out runs/ablate      # the real comparison on one H100
    viddiff ablate --preset cpu --variants conv:full3d,conv:2plus1d,conv:pseudo3d
    viddiff ablate --preset cpu --out runs/ablate-cpu --resume   # after an interruption

Fair comparison means: the same clips, the same noise levels and noise in the same order,
the same number of optimizer steps, and (the part that is easy to get wrong) the **same
parameter count** — a variant that is cheaper per layer (pseudo-3D, a lightweight 2-D
backbone) gets a wider network until it has the target count (within ~10%), otherwise
the comparison measures width, not architecture.

For each variant the report lists: parameters, FLOPs per clip (one forward,
FlopCounterMode), peak training memory (CUDA allocator; on CPU the live-tensor tracker of
``analysis.complexity``), training throughput (clips / s), training loss at the end of the
budget, a held-out denoising loss at fixed noise levels (the comparable number), and the
probe accuracy of samples when a probe weights file exists at
``metrics.probe.DEFAULT_PROBE`` (otherwise "n/a", with a note saying how to train one).
Outputs in ``--out``: ``ablation.json``, ``ablation.md`` (the table) and ``ablation.png``.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from viddiff_mini.ablate_report import markdown_table, plot_result, write_report
from viddiff_mini.config import MAIN_CLASSES
from viddiff_mini.utils import autocast, default_device, tqdm

# --------------------------------------------------------------------------- variants
# name -> (registered model, constructor overrides). Defaults of the U-Net: 2plus1d conv,
# divided attention, temporal attention, so "model:unet3d" is that configuration.
VARIANTS: dict[str, tuple[str, dict]] = {
    "conv:full3d": ("unet3d", {"conv": "full3d"}),
    "conv:2plus1d": ("unet3d", {"conv": "2plus1d"}),
    "conv:pseudo3d": ("unet3d", {"conv": "pseudo3d"}),
    "attn:divided": ("unet3d", {"attention": "divided"}),
    "attn:full": ("unet3d", {"attention": "full"}),
    "attn:window": ("unet3d", {"attention": "window", "attention_opts": {"window": (2, 4, 4)}}),
    "attn:sparse": ("unet3d", {"attention": "sparse",
                               "attention_opts": {"local": (1, 1, 1), "stride": (2, 4, 4)}}),
    # + content-adaptive routing: each query block also sees its 2 best-scoring key blocks
    "attn:sparse_topk": ("unet3d", {"attention": "sparse",
                                    "attention_opts": {"local": (1, 1, 1), "stride": (2, 4, 4),
                                                       "topk_blocks": 2, "block": (1, 4, 4)}}),
    "temporal:attention": ("unet3d", {"temporal": "attention"}),
    "temporal:recurrent": ("unet3d", {"temporal": "recurrent"}),
    "temporal:bidirectional": ("unet3d", {"temporal": "bidirectional"}),
    "model:unet3d": ("unet3d", {}),
    "model:dit": ("dit", {}),
    "model:lightweight": ("lightweight", {"motion": "shift"}),
}


@dataclass
class AblationPreset:
    """Sizes and budget of one ablation preset (every variant gets the same)."""

    frames: int
    size: int
    num_classes: int
    clips: int                  # training clips (a fixed subset of the train split)
    eval_clips: int             # held-out clips (test split) for the eval loss
    batch: int
    steps: int
    lr: float
    target_params: int
    unet: dict = field(default_factory=dict)    # UNet3D / UNet2D shape (not the width)
    dit: dict = field(default_factory=dict)     # VideoDiT shape (not the width)
    sample_n: int = 8
    sample_steps: int = 20
    guidance: float = 2.0
    # The latent route (11.1.6 route 3): every variant diffuses in this autoencoder's latent
    # space (a pretrained name such as "msh-ae" or a `viddiff train-ae` run); frames and
    # size stay the *clip's* shape, the models see the latent's. None: pixel space.
    latent: str | None = None
    # MovingShapes class names to train on (None: the first num_classes classes, which are
    # alphabetical and nearly one motion: Approach x4, Blink x4, Bounce x2)
    classes: tuple[str, ...] | None = None
    # object-weighted loss (train.object_loss_weights): 0 is the plain mean over positions
    object_weight: float = 0.0

    def class_ids(self) -> list[int]:
        """Data-set class ids of the preset's classes (run label k = class_ids()[k])."""
        if self.classes is None:
            return list(range(self.num_classes))
        from viddiff_mini.data.synthetic import class_ids_of
        if len(self.classes) != self.num_classes:
            raise ValueError(f"AblationPreset.classes: {list(self.classes)} must be "
                             f"{self.num_classes} MovingShapes class names (num_classes)")
        return class_ids_of(self.classes, "AblationPreset.classes")


PRESETS: dict[str, AblationPreset] = {
    # smoke test: every variant in well under a minute on one CPU core
    # (heads=1 so the width can move in steps of 1 channel: matching within 10% needs it)
    "tiny": AblationPreset(frames=4, size=16, num_classes=4, clips=16, eval_clips=4, batch=2,
                           steps=4, lr=1e-3, target_params=120_000,
                           unet=dict(channel_mults=(1, 2), attn_levels=(1,), heads=1),
                           dit=dict(depth=2, heads=1, patch=(1, 4, 4)),
                           sample_n=2, sample_steps=2),
    # a few hours on a laptop CPU (heads=2: widths move in steps of 2, so every variant
    # lands within 10% of the target; with 4 heads the U-Nets overshot by 15-20%)
    "cpu": AblationPreset(frames=8, size=32, num_classes=10, clips=1000, eval_clips=64,
                          batch=8, steps=400, lr=5e-4, target_params=1_000_000,
                          unet=dict(channel_mults=(1, 2, 2), attn_levels=(1, 2), heads=2),
                          dit=dict(depth=6, heads=4, patch=(1, 4, 4)),
                          sample_n=20, sample_steps=20),
    # the same comparison on the latent route, where 30 CPU minutes already give a main
    # job the probe recognises (msh-class8: 82.5% after 3,234 steps): msh-ae latents
    # (16x32x32 clips -> 8x8x16x16), the main job's 8 classes (distinct motions), its lr,
    # batch and object-weighted loss, and the probe's argmax over those 8 classes.
    # ~7 minutes per variant on one core (1,200 steps; ~14 with the bidirectional ConvGRU)
    "cpu-latent": AblationPreset(frames=16, size=32, num_classes=8, clips=1000, eval_clips=64,
                                 batch=8, steps=1200, lr=1e-3, target_params=800_000,
                                 unet=dict(channel_mults=(1, 2, 2), attn_levels=(1, 2),
                                           heads=2),
                                 dit=dict(depth=6, heads=4, patch=(1, 2, 2)),
                                 sample_n=48, sample_steps=25, guidance=4.0,
                                 latent="msh-ae", classes=MAIN_CLASSES, object_weight=9.0),
    # one H100: 16x64x64 clips, all classes
    "gpu": AblationPreset(frames=16, size=64, num_classes=101, clips=4096, eval_clips=256,
                          batch=32, steps=3000, lr=3e-4, target_params=20_000_000,
                          unet=dict(channel_mults=(1, 2, 2, 2), attn_levels=(2, 3), heads=8),
                          dit=dict(depth=12, heads=8, patch=(1, 4, 4)),
                          sample_n=202, sample_steps=30),
}


def data_shape(preset: AblationPreset) -> tuple[int, int, int, int]:
    """(c, t, h, w) of what the variants see: the clip, or its latent on the latent route."""
    if preset.latent is None:
        return (3, preset.frames, preset.size, preset.size)
    from viddiff_mini.latent import autoencoder
    return autoencoder(preset.latent).latent_shape(preset.frames, preset.size)


def list_variants() -> list[str]:
    """All variant names (``kind:value``)."""
    return list(VARIANTS)


def _check_variants(names) -> list[str]:
    names = list(names)
    bad = [n for n in names if n not in VARIANTS]
    if bad:
        raise ValueError(f"--variants: unknown variant(s) {bad}; choose from "
                         f"{', '.join(VARIANTS)}")
    if not names:
        raise ValueError("--variants: expected at least one variant")
    return names


# Variants whose width alone moves the parameter count in steps too coarse to land within
# 10% of the target: a second, finer knob (the ConvGRU hidden size) is tuned as well.
FINE_KNOBS = {"temporal:recurrent": "hidden", "temporal:bidirectional": "hidden"}


def _canonical(model: str, kwargs: dict) -> dict:
    """kwargs with the constructor's defaults filled in (so equal configs compare equal)."""
    from viddiff_mini.models import MODELS

    full = {}
    for p in inspect.signature(MODELS[model]).parameters.values():
        if p.default is not inspect.Parameter.empty:
            full[p.name] = p.default
    full.update(kwargs)
    return full


def variant_kwargs(name: str, preset: AblationPreset, width: int,
                   hidden: int | None = None) -> tuple[str, dict]:
    """(registered model name, constructor kwargs) of a variant at a given width.

    width: ``base_channels`` of the U-Nets (UNet3D, the 2-D backbone of ``lightweight``)
    or ``dim`` of the DiT. hidden: the ConvGRU hidden size (variants in FINE_KNOBS only).
    """
    model, over = VARIANTS[name]
    c, frames, size, _ = data_shape(preset)
    common = dict(num_classes=preset.num_classes, frames=frames, image_size=size)
    if preset.latent is not None:
        common["in_channels"] = c
    if model == "dit":
        d = preset.dit
        return model, dict(common, size={"depth": d["depth"], "dim": width, "heads": d["heads"]},
                           patch=d["patch"], **over)
    kw = dict(common, base_channels=width, **preset.unet)
    kw.update(copy.deepcopy(over))
    if hidden is not None and name in FINE_KNOBS:
        kw["temporal_opts"] = {FINE_KNOBS[name]: hidden}
    return model, kw


def _width_step(name: str, preset: AblationPreset) -> int:
    model = VARIANTS[name][0]
    heads = preset.dit["heads"] if model == "dit" else preset.unet["heads"]
    return math.lcm(4, heads) if model == "dit" else heads


_PARAM_CACHE: dict[str, int] = {}


def count_params(model_name: str, kwargs: dict) -> int:
    """Parameter count of a registered model without allocating it (meta device)."""
    from viddiff_mini.models import build_model

    key = json.dumps([model_name, kwargs], sort_keys=True, default=str)
    if key not in _PARAM_CACHE:
        with torch.device("meta"):
            m = build_model(model_name, **kwargs)
        _PARAM_CACHE[key] = sum(p.numel() for p in m.parameters())
    return _PARAM_CACHE[key]


def _closest(params, target: int, hi: int) -> int:
    """The k in 1..hi with params(k) closest to target (params increasing in k).

    Parameter counts of these models are (close to) quadratic in the width, so three
    probes give a near-exact guess; a short walk then brackets the target exactly.
    """
    pts = [2, 4, 8]
    a, b, c = np.polyfit(pts, [params(k) for k in pts], 2)
    roots = [r.real for r in np.roots([a, b, c - target]) if abs(r.imag) < 1e-9 and r.real > 0]
    k = min(hi, max(1, math.floor(max(roots)))) if roots else 1
    while k > 1 and params(k) > target:
        k -= 1
    while k < hi and params(k + 1) < target:
        k += 1
    return min({k, min(hi, k + 1)}, key=lambda j: abs(params(j) - target))


def match_width(name: str, preset: AblationPreset, target: int | None = None,
                max_multiple: int = 512) -> dict:
    """The width whose parameter count is closest to ``target``.

    Widths move in multiples of the heads (U-Nets) or of lcm(4, heads) (DiT). Variants in
    :data:`FINE_KNOBS` also tune their hidden size around the best widths. Returns
    ``{"width", "hidden", "params", "ratio"}`` (ratio = params / target; hidden None
    unless tuned).
    """
    target = target or preset.target_params
    step = _width_step(name, preset)

    def params(k: int, hidden: int | None = None) -> int:
        try:
            return count_params(*variant_kwargs(name, preset, k * step, hidden))
        except ValueError:  # too narrow for this variant (e.g. a shift needs 2 channels)
            return 0

    best = _closest(params, target, max_multiple)
    choice = (best, None, params(best))
    if name in FINE_KNOBS:
        for k in {max(1, best - 1), best, best + 1}:
            h = _closest(lambda j, k=k: params(k, j), target, 8 * k * step)
            p = params(k, h)
            if abs(p - target) < abs(choice[2] - target):
                choice = (k, h, p)
    k, hidden, p = choice
    return {"width": k * step, "hidden": hidden, "params": p, "ratio": p / target}


# --------------------------------------------------------------------------- data
def load_subset(preset: AblationPreset, seed: int, device) -> dict:
    """Fixed training and held-out clips of the preset's classes.

    Returns ``video`` / ``eval_video`` (what the variants see: pixels (n, 3, t, h, w), or
    latents (n, C, t', h', w') on the latent route), ``label`` / ``eval_label`` (run labels
    0..K-1), ``eval_pixels`` (the held-out clips, for the probe's ceiling), ``class_ids``
    (run label -> data-set class id) and, with an object weight, ``weight`` (n, 1, t, h, w)
    at the data's shape, normalised to mean 1 per clip (the trainer divides by the batch's
    mean weight instead: the same emphasis on objects, a slightly different per-step scale).
    """
    from viddiff_mini.data import synthetic

    ids = preset.class_ids()
    table = synthetic.clip_index_table()
    g = torch.Generator().manual_seed(seed)

    def pick(split: str, n: int) -> list[int]:
        pool = [i for i in synthetic.split_indices(split, 1) if table[i][0] in ids]
        order = torch.randperm(len(pool), generator=g)[:n].tolist()
        return [pool[i] for i in order]

    def run_labels(batch: dict) -> torch.Tensor:
        return torch.tensor([ids.index(int(k)) for k in batch["label"]], device=device)

    truth = preset.object_weight > 0
    train = synthetic.render_batch(pick("train", preset.clips), frames=preset.frames,
                                   size=preset.size, seed=seed, device=device, truth=truth)
    held = synthetic.render_batch(pick("test", preset.eval_clips), frames=preset.frames,
                                  size=preset.size, seed=seed, device=device)
    video, eval_video = train["video"], held["video"]
    if preset.latent is not None:  # encode once: the autoencoder is frozen
        from viddiff_mini.latent import autoencoder
        ae = autoencoder(preset.latent, device)
        with torch.no_grad():
            video, eval_video = (torch.cat([ae.encode(v[i:i + 32]) for i in range(0, len(v), 32)])
                                 for v in (video, eval_video))
    data = {"video": video, "label": run_labels(train), "eval_video": eval_video,
            "eval_label": run_labels(held), "eval_pixels": held["video"], "class_ids": ids}
    if truth:
        from viddiff_mini.train import object_loss_weights
        w = object_loss_weights(train["masks"], preset.object_weight, video.shape[2:])
        data["weight"] = w / w.mean(dim=(1, 2, 3, 4), keepdim=True)
    return data


def _step_draws(preset: AblationPreset, n_clips: int, seed: int, step: int, shape):
    """Clip indices, noise levels, noise and label dropout of one step (same for all)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(n_clips, (preset.batch,), generator=g)
    t = 1e-3 + (1 - 1e-3) * torch.rand(preset.batch, generator=g)
    noise = torch.randn((preset.batch, *shape), generator=g)
    keep = torch.rand(preset.batch, generator=g) >= 0.1
    return idx, t, noise, keep


# --------------------------------------------------------------------------- measurements
def flops_per_clip(model, preset: AblationPreset, device) -> int:
    """Forward FLOPs for one clip (FlopCounterMode; attention under the math backend)."""
    from torch.utils.flop_counter import FlopCounterMode

    from viddiff_mini.analysis.complexity import math_sdpa

    x = torch.zeros(1, *data_shape(preset), device=device)
    cond = {"label": torch.zeros(1, dtype=torch.long, device=device)}
    model.eval()
    with torch.no_grad(), math_sdpa(), FlopCounterMode(display=False) as fc:
        model(x, torch.full((1,), 0.5, device=device), cond)
    model.train()
    return int(fc.get_total_flops())


@torch.no_grad()
def eval_loss(model, diffusion, data: dict, seed: int, device, batch: int = 16) -> float:
    """Denoising loss on the held-out clips at fixed noise levels and fixed noise."""
    video, labels = data["eval_video"], data["eval_label"]
    n = video.shape[0]
    g = torch.Generator().manual_seed(seed + 7)
    t = torch.linspace(0.05, 0.95, n)[torch.randperm(n, generator=g)]
    noise = torch.randn(video.shape, generator=g)
    model.eval()
    total = 0.0
    for i in range(0, n, batch):
        sl = slice(i, i + batch)
        with autocast(device):
            loss = diffusion.loss(model, video[sl], {"label": labels[sl]},
                                  t=t[sl].to(device), noise=noise[sl].to(device),
                                  reduction="sum")
        total += float(loss)
    model.train()
    return total / max(n, 1)


def _restrict(preset: AblationPreset, ids: list[int]) -> list[int] | None:
    """The probe's argmax runs over the preset's classes when it names them (else 101-way)."""
    return ids if preset.classes is not None else None


def real_probe_accuracy(data: dict, device, preset: AblationPreset | None = None) -> float:
    """Probe accuracy on the held-out real clips of :func:`load_subset` (the samples' ceiling)."""
    from viddiff_mini.metrics.probe import DEFAULT_PROBE, load_probe, probe_accuracy

    probe = load_probe(DEFAULT_PROBE, device=device)
    ids = data["class_ids"]
    labels = torch.tensor([ids[k] for k in data["eval_label"].tolist()])
    restrict = _restrict(preset, ids) if preset is not None else None
    return probe_accuracy(probe, data["eval_pixels"].float(), labels,
                          restrict_to=restrict)["accuracy"]


def probe_score(model, diffusion, preset: AblationPreset, seed: int, device) -> float | None:
    """Probe accuracy of class-conditional samples, or None without a probe weights file.

    On the latent route the sampler runs on the latent (x0 not clamped: standardised latents
    are not confined to [-1, 1]) and the samples are decoded before the probe sees them."""
    from viddiff_mini.metrics.probe import DEFAULT_PROBE, load_probe, probe_accuracy

    if not DEFAULT_PROBE.exists():
        return None
    probe = load_probe(DEFAULT_PROBE, device=device)
    ids = preset.class_ids()
    labels = torch.arange(preset.sample_n) % preset.num_classes
    g = torch.Generator().manual_seed(seed + 11)
    from viddiff_mini.latent import autoencoder, sample_clips
    ae = autoencoder(preset.latent, device) if preset.latent is not None else None
    model.eval()
    with autocast(device):
        x = sample_clips(model, diffusion, (preset.sample_n, 3, preset.frames, preset.size,
                                            preset.size), ae,
                         cond={"label": labels.to(device)}, steps=preset.sample_steps,
                         guidance=preset.guidance, generator=g, device=device)
    model.train()
    return probe_accuracy(probe, x.float().clamp(-1, 1), torch.tensor([ids[k] for k in labels]),
                          restrict_to=_restrict(preset, ids))["accuracy"]


def train_variant(name: str, preset: AblationPreset, data: dict, width: int, seed: int,
                  device, steps: int | None = None, with_probe: bool = True,
                  hidden: int | None = None) -> dict:
    """Train one variant for the preset's budget; returns its measured row."""
    from viddiff_mini.analysis.complexity import LiveTensorBytes
    from viddiff_mini.diffusion import Diffusion
    from viddiff_mini.models import build_model

    steps = steps or preset.steps
    model_name, kwargs = variant_kwargs(name, preset, width, hidden)
    torch.manual_seed(seed)  # the same initialisation stream for every variant
    model = build_model(model_name, **kwargs).to(device)
    diffusion = Diffusion(schedule="cosine", objective="v")
    params = sum(p.numel() for p in model.parameters())
    flops = flops_per_clip(model, preset, device)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=preset.lr,
                            betas=(0.9, 0.99))
    video, labels = data["video"], data["label"]
    cuda = device.type == "cuda"

    def step(s: int) -> torch.Tensor:
        idx, t, noise, keep = _step_draws(preset, video.shape[0], seed, s, video.shape[1:])
        idx = idx.to(device)
        cond = {"label": labels[idx], "label_keep": keep.to(device)}
        weights = data["weight"][idx] if "weight" in data else None
        with autocast(device):
            loss = diffusion.loss(model, video[idx], cond, weights=weights, t=t.to(device),
                                  noise=noise.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    model.train()
    # step 0: peak memory (includes the optimizer state it creates) and warm-up
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        losses = [step(0)]
        torch.cuda.synchronize(device)
    else:
        with LiveTensorBytes() as tracker:
            losses = [step(0)]
    t0 = time.perf_counter()
    for s in range(1, steps):
        losses.append(step(s))
    if cuda:
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
    else:
        peak = tracker.peak
    seconds = time.perf_counter() - t0
    timed = max(steps - 1, 1)
    losses = torch.stack(losses).float().cpu()
    t_probe = time.perf_counter()
    tail = losses[-max(1, len(losses) // 5):]
    row = {"variant": name, "model": model_name, "width": width, "hidden": hidden,
           "params": params,
           "flops_per_clip": flops, "peak_train_bytes": int(peak),
           "clips_per_s": preset.batch * timed / seconds if steps > 1 else float("nan"),
           "train_loss": float(tail.mean()), "eval_loss": eval_loss(model, diffusion, data,
                                                                    seed, device),
           "probe_accuracy": probe_score(model, diffusion, preset, seed, device)
           if with_probe else None,
           "nonfinite": bool(not torch.isfinite(losses).all()),
           # wall time of the variant: training, then eval loss and sampling + probe
           "train_seconds": seconds, "eval_seconds": time.perf_counter() - t_probe,
           "losses": [float(v) for v in losses]}  # per-step training loss (loss curves)
    return row


# --------------------------------------------------------------------------- the ablation
def _previous_rows(out: Path, config: dict, resume: bool, force: bool) -> tuple[dict, float]:
    """Finished rows of an earlier run in ``out`` that ``--resume`` may keep: ``{variant: row}``.

    An existing report is never overwritten silently (a cpu ablation is hours of work):
    without ``resume`` or ``force`` it is an error; with ``resume`` its config must match.
    """
    path = out / "ablation.json"
    if force or not path.exists():
        return {}, 0.0
    if not resume:
        raise FileExistsError(f"--out: {path} exists (an earlier ablation); pass --resume to "
                              f"keep its finished variants or --force to start over")
    try:
        old = json.loads(path.read_text())
        old_config, rows = old["config"], old["rows"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"--resume: {path} is not an ablation report ({e}); "
                         f"use --force to start over") from None
    new_config = json.loads(json.dumps(config, default=str))  # tuples -> lists, as stored
    differ = sorted(k for k in set(old_config) | set(new_config)
                    if old_config.get(k) != new_config.get(k))
    if differ:
        detail = ", ".join(f"{k}: {old_config.get(k)!r} -> {new_config.get(k)!r}" for k in differ)
        raise ValueError(f"--resume: {path} was made with a different configuration "
                         f"({detail}); use another --out or --force")
    return {r["variant"]: r for r in rows}, float(old.get("seconds", 0.0))


def run_ablation(preset: str | AblationPreset = "tiny", variants=None, out=None,
                 steps: int | None = None, seed: int = 0, device=None,
                 progress: bool = True, target_params: int | None = None,
                 resume: bool = False, force: bool = False) -> dict:
    """Train each variant at a matched parameter count; write JSON, markdown and a plot.

    preset: ``"tiny" | "cpu" | "gpu"`` or an :class:`AblationPreset`. variants: names from
    :data:`VARIANTS` (default all). out: output folder (None: nothing written).
    The report in ``out`` is rewritten after every variant, so an interrupted run keeps
    what it finished; ``resume=True`` then trains only the missing variants (the config
    must match), ``force=True`` starts over. Without either an existing report is an error.
    Returns ``{"preset", "config", "variants", "rows", "notes", "seconds", "complete"}``;
    ``rows`` has one dict per variant (see :func:`train_variant`, plus ``param_ratio``
    and ``same_as``).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"--preset: unknown preset {preset!r}; choose from "
                             f"{', '.join(PRESETS)}")
        name, cfg = preset, PRESETS[preset]
    else:
        name, cfg = "custom", preset
    names = _check_variants(variants if variants is not None else VARIANTS)
    device = torch.device(device) if device is not None else default_device()
    target = target_params or cfg.target_params
    config = asdict(cfg) | {"target_params": target, "steps": steps or cfg.steps,
                            "seed": seed, "device": str(device)}
    previous, seconds_before = ({}, 0.0) if out is None else \
        _previous_rows(Path(out), config, resume, force)
    t_start = time.perf_counter()
    data = load_subset(cfg, seed, device)
    from viddiff_mini.metrics.probe import DEFAULT_PROBE

    notes = []
    n_train = data["video"].shape[0]
    if n_train < cfg.clips:
        notes.append(f"{n_train} training clips: all the fold-1 train split holds for these "
                     f"classes (the preset asks for up to {cfg.clips})")
    with_probe = DEFAULT_PROBE.exists()
    real_accuracy = None
    if not with_probe:
        notes.append(f"probe accuracy n/a: no probe weights at {DEFAULT_PROBE} "
                     f"(train one with `viddiff eval train-probe`)")
    else:  # the ceiling: the probe on real held-out clips of this size (resized like samples)
        real_accuracy = real_probe_accuracy(data, device, cfg)
        n = data["eval_video"].shape[0]
        among = (f"argmax over the {cfg.num_classes} run classes" if cfg.classes is not None
                 else "101-way argmax")
        notes.append(f"probe accuracy on {n} real held-out clips at {cfg.frames}x{cfg.size}x"
                     f"{cfg.size}: {100 * real_accuracy:.1f}% (the most samples can score; "
                     f"{among})")
    if cfg.latent is not None:
        c, t, h, w = data_shape(cfg)
        notes.append(f"latent route: every variant diffuses in {cfg.latent}'s latent space "
                     f"({c}x{t}x{h}x{w} per clip); samples are decoded before the probe")
    rows, done = [], {}
    bar = tqdm(names, desc=f"ablate {name}", disable=not progress, dynamic_ncols=True)
    for v in bar:
        bar.set_postfix_str(v)
        match = match_width(v, cfg, target)
        model_name, kwargs = variant_kwargs(v, cfg, match["width"], match["hidden"])
        key = json.dumps([model_name, _canonical(model_name, kwargs)], sort_keys=True,
                         default=str)
        if v in previous:  # --resume: finished in an earlier run with this config
            row = previous[v]
        elif key in done:  # the same configuration under two names: train once
            row = dict(done[key], variant=v, same_as=done[key]["variant"])
        else:
            row = train_variant(v, cfg, data, match["width"], seed, device, steps, with_probe,
                                match["hidden"])
            row["same_as"] = None
        row["param_ratio"] = row["params"] / target
        if abs(row["param_ratio"] - 1) > 0.1:
            notes.append(f"{v}: {row['params']:,} parameters is {row['param_ratio']:.2f}x the "
                         f"target {target:,} (width granularity)")
        if row["nonfinite"]:
            notes.append(f"{v}: non-finite training loss (lower the learning rate)")
        rows.append(row)
        done.setdefault(key, row)  # trained here or kept by --resume: later twins reuse it
        result = {"preset": name, "config": config, "variants": names, "rows": rows,
                  "probe_real_accuracy": real_accuracy, "notes": notes,
                  "seconds": seconds_before + time.perf_counter() - t_start,
                  "complete": len(rows) == len(names)}
        if out is not None:  # after every variant: an interruption loses one variant at most
            write_report(result, Path(out))
    return result


# --------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny", help=f"one of {', '.join(PRESETS)}")
    p.add_argument("--variants", help=f"comma list (default all): {', '.join(VARIANTS)}")
    p.add_argument("--out", default=None, help="output folder (default runs/ablate-PRESET)")
    p.add_argument("--steps", type=int, help="training steps per variant (default: preset)")
    p.add_argument("--target-params", type=int, help="parameter count to match (default: preset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cpu | cuda (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished variants of the report in --out (same config)")
    p.add_argument("--force", action="store_true", help="overwrite the report in --out")


def main(args: argparse.Namespace) -> int:
    variants = None
    if args.variants:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    out = Path(args.out or f"runs/ablate-{args.preset}")
    try:
        if args.steps is not None and args.steps < 1:
            raise ValueError(f"--steps: expected a positive int, got {args.steps}")
        result = run_ablation(args.preset, variants, out, steps=args.steps, seed=args.seed,
                              device=args.device, progress=not args.quiet,
                              target_params=args.target_params, resume=args.resume,
                              force=args.force)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"viddiff ablate: {e}", file=sys.stderr)
        return 1
    print(markdown_table(result))
    print(f"wrote {out / 'ablation.json'}, {out / 'ablation.md'}, {out / 'ablation.png'} "
          f"({result['seconds']:.1f} s)")
    return 0


__all__ = ["VARIANTS", "PRESETS", "AblationPreset", "list_variants", "variant_kwargs",
           "count_params", "match_width", "data_shape", "load_subset", "flops_per_clip", "eval_loss",
           "real_probe_accuracy", "train_variant", "run_ablation", "markdown_table",
           "plot_result", "write_report", "main", "add_arguments", "FINE_KNOBS"]
