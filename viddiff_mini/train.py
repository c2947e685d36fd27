"""Train a video diffusion model: one loop for every model, data source and device.

    viddiff train --preset tiny --out runs/tiny                # seconds on a laptop CPU
    viddiff train --preset auto --out runs/main                # gpu preset when CUDA is present
    torchrun --nproc_per_node 2 -m viddiff_mini.cli train ...  # DDP (gloo on CPU, nccl on GPU)

The loop reads top to bottom: set up (device, DDP, run folder), data, model, diffusion,
optimizer and EMA, resume, then ``for step in range(...)``. What makes it trustworthy:

* **Exact resume.** All randomness of step ``s`` (which clips, which noise levels, which
  noise, which conditions are dropped) comes from a generator seeded by ``(seed, s)``, so a
  resumed run draws exactly what the uninterrupted run drew. On CPU the losses of an
  interrupted-and-resumed run equal an uninterrupted run's bit for bit (tested).
* **DDP = a bigger batch.** Every rank draws the same *global* batch and keeps its stripe
  ``[rank::world]``; DDP averages the gradients, so 2 ranks x B/2 equal 1 rank x B (tested).
* **Atomic checkpoints** (temp file + ``os.replace``) with model, EMA, optimizer, step and
  RNG states, loaded with ``weights_only=True``.
* **NaN guard.** A non-finite loss stops the run with a message; the last good checkpoint
  stays on disk untouched.
* **No host syncs per step** on GPU: the loss is summed on the device and read at log steps.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from viddiff_mini.config import PRESETS, TrainConfig, get_preset, parse_data_spec
from viddiff_mini.utils import (
    atomic_torch_save,
    atomic_write_bytes,
    autocast,
    safe_torch_load,
    tqdm,
)

CKPT_NAME = "checkpoint.pt"


class NonFiniteLossError(RuntimeError):
    """Raised when the loss becomes NaN/inf; the last good checkpoint is kept."""


# ============================================================================ distributed
def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world_size, device). Under ``torchrun``: first pick this process's GPU
    (``set_device(LOCAL_RANK)``), then initialise the process group bound to it (nccl with
    ``device_id``, so NCCL never guesses a device or opens a context on GPU 0 from every
    rank); gloo on CPU. Without torchrun: (0, 1, cuda-or-cpu)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    return rank, world, device


# ============================================================================ data
class StepBatches:
    """The global batch of indices for each step, a pure function of ``(seed, step)``.

    Used as a ``batch_sampler`` (for DataLoader over real video) or directly (for the
    on-the-fly MovingShapes renderer). Each rank keeps its stripe ``[rank::world]``.
    """

    def __init__(self, pool: list[int], batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world: int = 1):
        if len(pool) == 0:
            raise ValueError("training data: no clips to train on (empty split/class subset)")
        self.pool, self.batch_size, self.seed = torch.as_tensor(pool), batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world

    def global_indices(self, step: int) -> list[int]:
        g = step_generator(self.seed, step, salt=1)
        pick = torch.randint(len(self.pool), (self.batch_size,), generator=g)
        return self.pool[pick].tolist()

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.global_indices(step)[self.rank::self.world]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def step_generator(seed: int, step: int, salt: int = 0, device="cpu") -> torch.Generator:
    """A generator seeded by (seed, step, salt): step s's randomness, independent of history."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step * 7_919 + salt * 104_729) % (2**63 - 1))
    return g


class ShapesSource:
    """MovingShapes-101 rendered on the fly on the training device (no disk, no workers).

    With ``encoder`` (a latent run's frozen ``ae.encode``), each batch also carries
    ``"latent"`` (b, C, t', h', w'). A clip's latent is a pure function of its index, so it
    is encoded once, alone (batch of one: the same numbers whichever batch first draws it,
    which keeps ``--resume`` exact), and cached: encoding cost 0.32 s of a 0.84 s step on
    one CPU thread at the cpu preset, and a pool of 757 clips is drawn ~8 times over in
    30 minutes. 64 KB per clip at the cpu preset (50 MB for its 757 clips, 0.6 GB for all
    9,607 fold-1 training clips).
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, truth: bool, encoder=None):
        from viddiff_mini.data import synthetic

        self.cfg, self.device, self.truth, self.encoder = cfg, device, truth, encoder
        self._latents: dict[int, torch.Tensor] = {}
        table = synthetic.clip_index_table()
        ids = cfg.class_ids()
        clips = [i for i in synthetic.split_indices("train", cfg.fold) if table[i][0] in ids]
        # virtual camera pans: with cfg.virtual_pans = K every clip also appears K more times
        # under a pan (synthetic.virtual_pan). Why: in MovingShapes only the Pan clips move
        # the camera, and their object is still, so a first-frame model can tell camera from
        # object motion by the image alone and ignore the motion request; panned copies show
        # every motion under every camera. A pool entry codes (clip, copy) as
        # clip * (K + 1) + copy (copy 0 = the clip itself), so K = 0 is the plain pool.
        # Virtual moves: with cfg.virtual_moves = M, copies K + 1 .. K + M show the clip's
        # straight path slowed and moved (synthetic.relocate). Why: a Move clip's first frame
        # tells its direction and speed, so a first-frame model ignored the motion request;
        # moved copies show one image going several ways. A clip without a straight path
        # keeps its move copies as repeats of itself (class balance is unchanged).
        self.copies = cfg.virtual_pans + cfg.virtual_moves + 1
        straight = synthetic.straight_path_classes()
        self.pool = [i * self.copies + (c if c <= cfg.virtual_pans or table[i][0] in straight
                                        else 0)
                     for i in clips for c in range(self.copies)]
        # data-set class id -> run label (the run's classes may be any subset, in any order)
        self.to_run_label = torch.full((synthetic.NUM_CLASSES,), -1, dtype=torch.long)
        self.to_run_label[ids] = torch.arange(len(ids))
        self._render = synthetic.render_batch

    def batches(self, sampler: StepBatches):
        to_run_label = self.to_run_label.to(self.device)  # one copy, not one per step
        from viddiff_mini.data.synthetic import virtual_move, virtual_pan

        K, seed = self.cfg.virtual_pans, self.cfg.seed
        for idx in sampler:
            clips = [code // self.copies for code in idx]
            copies = [code % self.copies for code in idx]
            pans = None if not K else \
                [virtual_pan(i, c if c <= K else 0, seed) for i, c in zip(clips, copies)]
            moves = None if not self.cfg.virtual_moves else \
                [virtual_move(i, c - K, seed) if c > K else None for i, c in zip(clips, copies)]
            batch = self._render(clips, frames=self.cfg.frames, size=self.cfg.size,
                                 seed=seed, device=self.device, truth=self.truth,
                                 pans=pans, moves=moves)
            if self.cfg.classes:
                batch["label"] = to_run_label[batch["label"]]
            if self.encoder is not None:
                batch["latent"] = torch.cat([self._latent(i, v) for i, v in
                                             zip(idx, batch["video"].split(1))])
            yield batch

    @torch.no_grad()
    def _latent(self, index: int, video: torch.Tensor) -> torch.Tensor:
        if index not in self._latents:
            self._latents[index] = self.encoder(video)
        return self._latents[index]


class VideoSource:
    """Real video (UCF-101 layout or any folder) through a DataLoader with pinned memory."""

    def __init__(self, cfg: TrainConfig, kind: str, path: str, device: torch.device):
        from viddiff_mini.data.synthetic import collate_clips

        if kind == "ucf101":
            from viddiff_mini.data.ucf101 import UCF101
            self.dataset = UCF101(path, split="train", fold=cfg.fold, frames=cfg.frames,
                                  size=cfg.size, seed=cfg.seed)
        else:
            from viddiff_mini.data.folder import VideoFolder
            self.dataset = VideoFolder(path, frames=cfg.frames, size=cfg.size)
        labels = [self.dataset.label_of(i) if hasattr(self.dataset, "label_of") else 0
                  for i in range(len(self.dataset))]
        self.pool = [i for i, y in enumerate(labels) if y < cfg.num_classes]
        self.cfg, self.device, self.collate = cfg, device, collate_clips

    def batches(self, sampler: StepBatches):
        loader = torch.utils.data.DataLoader(
            _StepWindows(self.dataset), batch_sampler=_WithStep(sampler),
            num_workers=self.cfg.num_workers,
            collate_fn=self.collate, pin_memory=self.device.type == "cuda",
            persistent_workers=False)
        for batch in loader:
            yield {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v)
                   for k, v in batch.items()}


class _WithStep:
    """Batch sampler yielding ``(index, step)`` pairs, so items know the training step."""

    def __init__(self, sampler: StepBatches):
        self.sampler = sampler

    def __iter__(self):
        for step, idx in zip(range(self.sampler.start, self.sampler.stop), self.sampler):
            yield [(i, step) for i in idx]

    def __len__(self) -> int:
        return len(self.sampler)


class _StepWindows(torch.utils.data.Dataset):
    """A real-video dataset whose random clip window changes with the step.

    Datasets with ``set_epoch`` draw their random window from (seed, video, epoch); using
    the step as the epoch gives every visit of a video a new window, still a pure function
    of (seed, step) and so still exact under ``--resume`` and in any DataLoader worker.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item):
        index, step = item
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(step)
        return self.dataset[index]


def make_source(cfg: TrainConfig, device: torch.device, encoder=None):
    """The run's training clips; ``encoder``: cache MovingShapes latents (see ShapesSource)."""
    kind, path = parse_data_spec(cfg.data)
    truth = (cfg.conditions != ["label"] or cfg.temporal_loss == "flow_warp"
             or cfg.object_weight > 0)
    if kind == "shapes":
        return ShapesSource(cfg, device, truth, encoder)
    for flag, value in (("virtual_pans", cfg.virtual_pans), ("virtual_moves", cfg.virtual_moves)):
        if value:
            raise ValueError(f"{flag} {value}: virtual {flag[8:]} are rendered into "
                             f"MovingShapes clips; --data {cfg.data} is real video (pass "
                             f"--{flag.replace('_', '-')} 0)")
    if cfg.object_weight > 0:
        raise ValueError(f"object_weight {cfg.object_weight}: needs MovingShapes' object masks; "
                         f"--data {cfg.data} has none (pass --object-weight 0)")
    if cfg.classes:
        raise ValueError(f"classes {cfg.classes}: class names select MovingShapes-101 classes; "
                         f"for --data {cfg.data} use --classes K (the first K classes)")
    return VideoSource(cfg, kind, path, device)


# ============================================================================ model
def build_model_for(cfg: TrainConfig) -> nn.Module:
    """The model named in the config, with the conditioning inputs its conditions need."""
    from viddiff_mini.models import build_model

    kwargs = dict(cfg.model_kwargs)
    if cfg.conditions == ["label"]:
        kwargs.setdefault("num_classes", cfg.num_classes)
    else:
        from viddiff_mini.control.compose import model_kwargs_for
        extra = model_kwargs_for(cfg.conditions, cfg.frames, cfg.size)
        if "label" in cfg.conditions:
            extra["num_classes"] = cfg.num_classes
        kwargs.update(extra)
    if cfg.grad_checkpoint:
        kwargs["checkpoint"] = True
    c, frames, size = 3, cfg.frames, cfg.size
    if cfg.latent:  # the model sees the autoencoder's latent, not pixels
        from viddiff_mini.latent import check_model_channels, data_shape
        check_model_channels(cfg, kwargs)
        c, frames, size, _ = data_shape(cfg)
        kwargs.setdefault("in_channels", c)
        if kwargs.get("concat_channels"):  # pixel-aligned maps: folded onto the latent grid
            kwargs.setdefault("concat_fold", (cfg.frames // frames, cfg.size // size,
                                              cfg.size // size))
    # Models that can check the clip shape at construction (a window or patch that does not
    # divide it, a frame count the hierarchy cannot halve) get it, so a bad config fails
    # here with a message instead of deep inside the first forward pass.
    import inspect

    from viddiff_mini.models import MODELS
    accepted = inspect.signature(MODELS[cfg.model]).parameters if cfg.model in MODELS else {}
    if "frames" in accepted and "image_size" in accepted:
        kwargs.setdefault("frames", frames)
        kwargs.setdefault("image_size", size)
    return build_model(cfg.model, **kwargs)


def make_cond(cfg: TrainConfig, batch: dict, g: torch.Generator, device: torch.device,
              rank: int = 0, world: int = 1) -> dict:
    """The model's condition dict for this rank's part of the batch, with condition dropout.

    Dropping a condition (``label_keep`` False) with probability ``cfg.cond_drop`` teaches
    the same network the unconditional model that classifier-free guidance needs. The
    keep/drop decisions are drawn for the *global* batch and striped like the clips, so a
    DDP run drops exactly the samples a single-process run drops."""
    if cfg.conditions == ["label"]:  # drawn where ``g`` lives (the trainer: on the device)
        keep = torch.rand(cfg.batch_size, generator=g, device=g.device) >= cfg.cond_drop
        return {"label": batch["label"].to(device), "label_keep": keep[rank::world].to(device)}
    from viddiff_mini.control.compose import build_cond
    # Training keeps the first frame's repeated maps unwarped (camera_warp=False): the
    # shipped first-frame recipes learned from that layout, and sampling warps them by the
    # requested camera motion (control/animate.py first_frame_maps says why).
    return build_cond(cfg.conditions, batch, device, drop_p=cfg.cond_drop, generator=g,
                      rank=rank, world=world, camera_warp=False)


def make_diffusion(cfg: TrainConfig):
    from viddiff_mini.diffusion import Diffusion
    return Diffusion(schedule=cfg.schedule, objective=cfg.objective)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * model (parameters; buffers copied)."""
    e, m = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(e, m, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def ema_decay_at(cfg: TrainConfig, step: int) -> float:
    """EMA decay at ``step``: warmed up as ``(1 + n) / (10 + n)``, capped at ``cfg.ema_decay``.

    A fixed 0.999 averages over ~1000 steps, so after a few hundred steps the EMA would
    still be mostly the zero-output initial network and sample pure noise; the warm-up lets
    it follow the model early and average over longer windows later. Before
    ``cfg.ema_start`` the EMA copies the model.
    """
    if step < cfg.ema_start:
        return 0.0
    n = step - cfg.ema_start
    return min(cfg.ema_decay, (1.0 + n) / (10.0 + n))


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then constant (diffusion training is not sensitive to decay here)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


# ============================================================================ loss
def object_loss_weights(masks: torch.Tensor, weight: float, shape) -> torch.Tensor:
    """Per-position loss weights (b, 1, t, h, w) at the model's data ``shape`` (t, h, w):
    1 + ``weight`` where any object is (masks (b, k, T, H, W) bool, max-pooled down to a
    latent's grid, dilated by one cell).

    The label-dependent part of a MovingShapes clip is ~2% of its pixels; with a plain
    mean the network learns backgrounds for hundreds of steps before the object's motion
    matters to the loss (conditional and unconditional predictions stay equal). Weighting
    object positions makes what the class decides a sizeable part of the loss."""
    import torch.nn.functional as F
    m = masks.any(dim=1, keepdim=True).float()
    m = F.adaptive_max_pool3d(m, tuple(shape))
    m = F.max_pool3d(m, (1, 3, 3), stride=1, padding=(0, 1, 1))
    return 1.0 + weight * m


def diffusion_loss(diffusion, model, x0, cond, t, noise, cfg: TrainConfig, batch: dict):
    """Denoising loss at noise levels ``t`` (b,) with noise ``noise`` (b,c,t,h,w).

    Adds the temporal-consistency regulariser of section 11.1.1 on the model's x0 estimate
    when ``cfg.temporal_loss`` names one. Returns (scalar loss, x0 prediction or None)."""
    alpha, sigma = diffusion.alpha_sigma(t, x0)  # (b, 1, 1, 1, 1) each
    x_t = alpha * x0 + sigma * noise
    pred = model(x_t, t, cond)
    target = diffusion.objective.target(x0, noise, alpha, sigma)
    err = (pred.float() - target.float()).pow(2)
    if cfg.object_weight > 0:
        if "masks" not in batch:
            raise ValueError("object_weight > 0 needs ground-truth object masks (MovingShapes "
                             "data); this batch has none: set object_weight=0")
        w = object_loss_weights(batch["masks"], cfg.object_weight, err.shape[2:])
        loss = (err * w).mean() / w.mean()
    else:
        loss = err.mean()
    if cfg.temporal_loss != "none" and cfg.temporal_weight > 0:
        from viddiff_mini.analysis.consistency import get_temporal_loss
        x0_pred, _ = diffusion.objective.to_x0_eps(pred.float(), x_t.float(), alpha, sigma)
        loss = loss + cfg.temporal_weight * get_temporal_loss(cfg.temporal_loss)(
            x0_pred, x0.float(), flow=batch.get("flow"))
    return loss


# ============================================================================ run folder
def _normalise(d: dict) -> dict:
    return json.loads(json.dumps(d))


def prepare_run_dir(cfg: TrainConfig, out: Path, resume: bool, force: bool, rank: int) -> None:
    """Refuse to mix runs: an existing run folder with another config needs --resume or --force."""
    cfg_path = out / "config.json"
    if cfg_path.exists() and not force:
        old = json.loads(cfg_path.read_text())
        if not resume:
            raise FileExistsError(
                f"{out}: already holds a run; pass --resume to continue it or --force to "
                f"start over (which overwrites it)")
        new = _normalise(cfg.to_dict())
        # a field added to TrainConfig after the run began is missing from its config.json;
        # new fields default to the old behaviour, so the run had the default
        defaults = _normalise(TrainConfig().to_dict())
        old = {**{k: defaults[k] for k in new if k not in old and k in defaults}, **old}
        ignore = {"max_steps", "time_limit_min", "sample_every", "log_every", "ckpt_every",
                  "num_workers", "compile"}
        diff = {k: (old.get(k), v) for k, v in new.items()
                if k not in ignore and old.get(k) != v}
        if diff:
            raise ValueError(f"{out}: --resume with a different config {diff} (old, new); "
                             f"use the same settings or --force for a fresh run")
    # every rank has checked the folder as it was; only then may rank 0 write to it (else a
    # slower rank would find rank 0's fresh config.json and refuse the run as a clash)
    if dist.is_initialized():
        dist.barrier()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        if force:
            for name in (CKPT_NAME, "metrics.jsonl", "loss.png", "summary.json"):
                with contextlib.suppress(FileNotFoundError):
                    (out / name).unlink()
        atomic_write_bytes(cfg_path, json.dumps(cfg.to_dict(), indent=2).encode())


def save_checkpoint(path: Path, cfg, model, ema, opt, step: int,
                    train_seconds: float = 0.0) -> None:
    """Atomic checkpoint; ``train_seconds``: wall time of training so far, over every
    resumed session (so a run trained in parts reports its total)."""
    state = {
        "config": _normalise(cfg.to_dict()),
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": opt.state_dict(),
        "step": step,
        "train_seconds": float(train_seconds),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
    }
    atomic_torch_save(state, path)


def _trim_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint (they will be redone)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_bytes(path, ("\n".join(keep) + ("\n" if keep else "")).encode())


def plot_losses(metrics_path: Path, png: Path) -> None:
    # the Figure API draws without pyplot: no backend switch, so a notebook that calls
    # this keeps showing its own figures inline
    from matplotlib.figure import Figure

    rows = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if "loss" in r]
    if not rows:
        return
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title(f"{png.parent.name}: loss")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


# ============================================================================ sampling
@torch.no_grad()
def sample_grid(model, diffusion, cfg: TrainConfig, device, n: int, seed: int,
                labels: torch.Tensor | None = None, steps: int | None = None,
                guidance: float | None = None, sampler: str | None = None,
                progress: bool = False, cond: dict | None = None,
                **sample_kwargs) -> torch.Tensor:
    """n class-conditional samples (n,c,t,h,w) in [-1,1]; labels spread over the classes.

    A control model gets the ground-truth controls of a test clip of each label, unless
    ``cond`` (e.g. from ``control.compose.cond_for_spec``) is given. ``sample_kwargs`` go
    to ``Diffusion.sample`` (e.g. ``x0_hook``, which for a latent run acts on the *latent*
    clean-video estimate)."""
    if labels is None:
        labels = torch.arange(n) % cfg.num_classes
    if cond is not None:
        pass
    elif cfg.conditions == ["label"]:
        cond = {"label": labels.to(device)}
    else:  # other controls: taken from the ground truth of test clips of those classes
        from viddiff_mini.control.compose import truth_cond_for_labels
        cond = truth_cond_for_labels(cfg, labels, device)
    g = torch.Generator(device=device).manual_seed(seed)
    from viddiff_mini.latent import load_latent, sample_clips
    model.eval()
    with autocast(device, cfg.amp):
        x = sample_clips(model, diffusion, (n, 3, cfg.frames, cfg.size, cfg.size),
                         load_latent(cfg, device), hook_space="latent", cond=cond,
                         sampler=sampler or cfg.sampler, steps=steps or cfg.sample_steps,
                         guidance=cfg.sampling_guidance(guidance), generator=g,
                         device=device, progress=progress, **sample_kwargs)
    return x.float().clamp(-1, 1)


def write_samples(x: torch.Tensor, path: Path, fps: int = 8) -> None:
    from viddiff_mini.viz import save_gif
    save_gif(x.cpu(), path, fps=fps)


# ============================================================================ the loop
@contextlib.contextmanager
def stop_on_signal(signals=(signal.SIGTERM, signal.SIGINT)):
    """Turn SIGTERM / SIGINT (a scheduler's or `kill`'s stop, Ctrl-C) into a request that
    the loop honours at the end of the current step: it checkpoints there and returns,
    like a time limit. Without it a stop loses every step since the last periodic
    checkpoint (up to ``ckpt_every``). Yields ``{"signal": None | name}``; the previous
    handlers come back on exit. Only the main thread may set handlers; elsewhere (a
    notebook's worker thread) this is a no-op."""
    state: dict = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum, frame):
        if state["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt          # a second Ctrl-C: stop now
        state["signal"] = signal.Signals(signum).name

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield state
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def init_weights(cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The EMA weights named by ``cfg.init`` (a run folder, a checkpoint or a pretrained
    generator's name), checked against this run: same model, conditions, clip shape and
    latent space, else refused with both sides named."""
    model, _, other = load_run(cfg.init, device="cpu")
    keys = ("model", "model_kwargs", "conditions", "frames", "size", "latent", "num_classes")
    mine, theirs = (json.loads(json.dumps(c.to_dict())) for c in (cfg, other))  # tuples = lists
    diff = {k: (mine[k], theirs[k]) for k in keys if mine[k] != theirs[k]}
    if diff:
        raise ValueError(f"init {cfg.init}: its model does not match this run's; differing "
                         + "; ".join(f"{k}: this run {a!r}, init {b!r}" for k, (a, b) in diff.items()))
    return model.state_dict()


def train(cfg: TrainConfig, out: str | Path, resume: bool = False, force: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into run folder ``out``; return a summary dict (also written as JSON)."""
    out = Path(out)
    rank, world, device = setup_distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} must be divisible by the number of "
                         f"processes ({world})")
    prepare_run_dir(cfg, out, resume, force, rank)
    if dist.is_initialized():
        dist.barrier()
    ckpt_path, metrics_path = out / CKPT_NAME, out / "metrics.jsonl"

    # ---- model, diffusion, optimizer, EMA (same init on every rank: seeded) -------------
    torch.manual_seed(cfg.seed)
    model = build_model_for(cfg).to(device)
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    diffusion = make_diffusion(cfg)
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.99), fused=fused)

    start, before = 0, 0.0         # before: training seconds of earlier sessions
    if resume and ckpt_path.exists():
        state = safe_torch_load(ckpt_path, map_location=device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        before = float(state.get("train_seconds", 0.0))
        torch.set_rng_state(state["rng"]["torch"].cpu())
        if torch.cuda.is_available() and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["rng"]["cuda"]])
        if rank == 0:
            _trim_metrics(metrics_path, start)
            print(f"resumed {out} at step {start}", file=sys.stderr)
    else:
        if cfg.init:   # fine-tuning: another run's (EMA) weights, this run's data and optimizer
            weights = init_weights(cfg)
            model.load_state_dict(weights)
            ema.load_state_dict(weights)
        if rank == 0 and metrics_path.exists():
            metrics_path.unlink()

    # DDP first, then compile: compiling the DDP-wrapped module lets the compiler split the
    # graph at DDP's gradient buckets (DDPOptimizer), so all-reduce overlaps the backward
    step_model: nn.Module = model
    if world > 1:
        step_model = nn.parallel.DistributedDataParallel(
            step_model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile and device.type == "cuda":
        step_model = torch.compile(step_model)

    from viddiff_mini.latent import load_latent
    ae = load_latent(cfg, device)  # None in pixel space; frozen, shared by every step
    source = make_source(cfg, device, encoder=ae.encode if ae is not None else None)
    sampler = StepBatches(source.pool, cfg.batch_size, cfg.seed, start, cfg.max_steps,
                          rank, world)
    n_params = sum(p.numel() for p in model.parameters())
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not progress or rank != 0,
               desc=f"train {cfg.preset}", dynamic_ncols=True)

    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    step = start
    last_loss = float("nan")
    stop_reason = "max_steps"
    clips_seen = 0
    model.train()
    with stop_on_signal() as stopping, bar:   # SIGTERM / Ctrl-C: checkpoint, stop; bar closed
        for batch in source.batches(sampler):
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            # all of this step's randomness: seeded by (seed, step), drawn for the global batch
            # (drawn on the device: no host-to-device copy per step; on CPU the same numbers)
            g = step_generator(cfg.seed, step, salt=2, device=device)
            gd = step_generator(cfg.seed, step, salt=3, device=device)
            B = cfg.batch_size
            t = torch.rand(B, generator=g, device=device).mul_(diffusion.t_max - diffusion.t_min)
            t = t.add_(diffusion.t_min)[rank::world]
            if "latent" in batch:  # cached by the source
                x0 = batch["latent"]
            else:
                x0 = batch["video"].to(device)
                if ae is not None:
                    with torch.no_grad():
                        x0 = ae.encode(x0)
            noise = torch.randn((B, *x0.shape[1:]), generator=gd, device=device)[rank::world]
            cond = make_cond(cfg, batch, step_generator(
                cfg.seed, step, salt=4, device=device if cfg.conditions == ["label"] else "cpu"),
                device, rank, world)

            with autocast(device, cfg.amp):
                loss = diffusion_loss(diffusion, step_model, x0, cond, t, noise, cfg, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            ema_update(ema, model, ema_decay_at(cfg, step))
            step += 1
            clips_seen += B
            loss_sum += loss.detach()
            loss_count += 1

            # The stop decision (non-finite loss, time limit) is taken by every rank alike.
            # DDP: at log and checkpoint steps, from one all-reduced flag pair, so no rank
            # leaves the loop while the others wait for it in the next all-reduce. One
            # process: the clock every step (no sync), the loss every step on CPU (free)
            # and at log / checkpoint steps on CUDA (no host sync in between). A checkpoint
            # is never written from a bad state.
            at_log = step % cfg.log_every == 0 or step == cfg.max_steps
            at_ckpt = step % cfg.ckpt_every == 0 or step == cfg.max_steps
            time_up = (cfg.time_limit_min > 0 and
                       time.perf_counter() - t0 > 60 * cfg.time_limit_min) or \
                stopping["signal"] is not None     # a stop signal ends the run like time
            if at_log or at_ckpt or (world == 1 and (time_up or device.type == "cpu")):
                flags = torch.stack([(~torch.isfinite(loss_sum)).float(),
                                     torch.full((), float(time_up), device=device)])
                if world > 1:
                    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
                nonfinite, time_up = (bool(f) for f in flags.tolist())  # one read
                if nonfinite:
                    raise NonFiniteLossError(
                        f"loss became non-finite at step {step} (this rank's last loss: "
                        f"{loss.item()}): stopping. The last good checkpoint ({ckpt_path}) "
                        f"is kept; lower --lr, enable gradient clipping, or check the data "
                        f"for NaNs.")
            else:
                time_up = False
            if at_log:
                mean = loss_sum / max(loss_count, 1)
                if world > 1:
                    dist.all_reduce(mean, op=dist.ReduceOp.AVG)
                last_loss = mean.item()
                loss_sum.zero_()
                loss_count = 0
                elapsed = time.perf_counter() - t0
                if rank == 0:
                    row = {"step": step, "loss": last_loss, "lr": lr_at(cfg, step - 1),
                           "clips_per_s": clips_seen / max(elapsed, 1e-9),
                           "elapsed_s": round(elapsed, 3)}
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(row) + "\n")
                    bar.set_postfix(loss=f"{last_loss:.4f}")
            bar.update(1)

            if rank == 0 and at_ckpt:
                save_checkpoint(ckpt_path, cfg, model, ema, opt, step,
                                before + time.perf_counter() - t0)
            if rank == 0 and cfg.sample_every and step % cfg.sample_every == 0 \
                    and step != cfg.max_steps:
                x = sample_grid(ema, diffusion, cfg, device, cfg.sample_n, seed=cfg.seed)
                write_samples(x, out / "samples" / f"step_{step:06d}.gif")
                model.train()
            if time_up:  # agreed by every rank (see the stop decision above)
                stop_reason = "time_limit" if stopping["signal"] is None else \
                    f"signal ({stopping['signal']})"
                if rank == 0 and not at_ckpt:      # (at a checkpoint step: just written)
                    save_checkpoint(ckpt_path, cfg, model, ema, opt, step,
                                before + time.perf_counter() - t0)
                break

    elapsed = time.perf_counter() - t0
    if step == start and metrics_path.exists():  # nothing left to train: the last logged loss
        rows = [json.loads(x) for x in metrics_path.read_text().splitlines() if x.strip()]
        last_loss = rows[-1]["loss"] if rows else last_loss
    summary = {"step": step, "final_loss": last_loss, "params": n_params,
               "clips_per_s": clips_seen / max(elapsed, 1e-9), "elapsed_s": elapsed,
               "train_seconds_total": before + elapsed,
               "stop_reason": stop_reason, "device": str(device), "world_size": world}
    if device.type == "cuda":
        summary["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
    if rank == 0:
        if metrics_path.exists():
            plot_losses(metrics_path, out / "loss.png")
        if cfg.sample_n > 0:
            x = sample_grid(ema, diffusion, cfg, device, cfg.sample_n, seed=cfg.seed)
            write_samples(x, out / "samples" / "final.gif")
        atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


# ============================================================================ loading a run
def load_run(run: str | Path, device: torch.device | str | None = None, ema: bool = True):
    """(model with EMA weights in eval mode, diffusion, config) of a trained run folder, a
    checkpoint file, or a pretrained generator's name (``viddiff pretrained list``)."""
    from viddiff_mini import pretrained

    if not Path(run).exists() and str(run) in pretrained.names("generator"):
        run = pretrained.weights_path(str(run))
    run = Path(run)
    ckpt = run / CKPT_NAME if run.is_dir() else run
    if not ckpt.exists():
        shipped = ", ".join(pretrained.names("generator")) or "(none)"
        raise FileNotFoundError(f"{run}: no {CKPT_NAME} found; is this a run folder written "
                                f"by `viddiff train --out {run}`? Pretrained generators: "
                                f"{shipped}")
    state = safe_torch_load(ckpt)
    cfg = TrainConfig.from_dict(state["config"])
    device = torch.device(device) if device is not None else (
        torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
    model = build_model_for(cfg)
    model.load_state_dict(state["ema" if ema else "model"])
    return model.to(device).eval(), make_diffusion(cfg), cfg


# ============================================================================ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="tiny",
                   help=f"one of {', '.join([*PRESETS, 'auto'])} (auto = gpu with CUDA, else cpu)")
    p.add_argument("--data", default="shapes", help="shapes | ucf101:PATH | folder:PATH")
    p.add_argument("--out", required=True, help="run folder (checkpoint, metrics, samples)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument("--model", help="model name (unet3d, dit, lightweight)")
    p.add_argument("--steps", type=int, help="max training steps")
    p.add_argument("--minutes", type=float, help="stop after this many minutes (checkpointed)")
    p.add_argument("--batch", type=int, help="global batch size")
    p.add_argument("--lr", type=float)
    p.add_argument("--classes", help="train on the first K classes (an int) or on these "
                                     "MovingShapes-101 classes (comma-separated names)")
    p.add_argument("--latent", help="diffuse in this autoencoder's latent space: a `viddiff "
                                    "train-ae` run folder, its autoencoder.pt, or a pretrained "
                                    "name (msh-ae); '' for pixel space")
    p.add_argument("--frames", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--conditions", help="comma list: label,text,trajectory,first_frame,style,attributes")
    p.add_argument("--temporal-loss", help="none | frame_diff | flow_warp | feature")
    p.add_argument("--temporal-weight", type=float)
    p.add_argument("--object-weight", type=float,
                   help="extra loss weight where objects are (MovingShapes masks; 0 = off)")
    p.add_argument("--virtual-pans", type=int,
                   help="MovingShapes: also show each clip under K virtual camera pans "
                        "(teaches a first-frame model camera vs object motion; 0 = off)")
    p.add_argument("--virtual-moves", type=int,
                   help="MovingShapes: also show each straight-path clip K times slowed and "
                        "moved elsewhere in the frame (so a first frame does not tell its "
                        "motion; 0 = off)")
    p.add_argument("--init", help="fine-tune: start from these weights (a run folder or a "
                                  "pretrained generator's name; the model must match)")
    p.add_argument("--compile", dest="compile", action="store_true", default=None)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--grad-checkpoint", action="store_true", default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    cfg = get_preset(args.preset)
    parse_data_spec(args.data)  # fail early with the list of valid specs
    over: dict[str, Any] = {"data": args.data}
    for arg, name in [("model", "model"), ("steps", "max_steps"), ("minutes", "time_limit_min"),
                      ("batch", "batch_size"), ("lr", "lr"), ("latent", "latent"),
                      ("frames", "frames"), ("size", "size"), ("temporal_loss", "temporal_loss"),
                      ("temporal_weight", "temporal_weight"), ("compile", "compile"),
                      ("object_weight", "object_weight"), ("virtual_pans", "virtual_pans"),
                      ("virtual_moves", "virtual_moves"), ("init", "init"),
                      ("grad_checkpoint", "grad_checkpoint"), ("seed", "seed")]:
        value = getattr(args, arg, None)
        if value is not None:
            over[name] = value
    if args.classes:
        if args.classes.strip().isdigit():
            over["num_classes"], over["classes"] = int(args.classes), []
        else:
            over["classes"] = [c.strip() for c in args.classes.split(",") if c.strip()]
    if args.conditions:
        over["conditions"] = [c.strip() for c in args.conditions.split(",") if c.strip()]
    if over.get("model", cfg.model) != cfg.model:
        over["model_kwargs"] = {}  # the preset's U-Net sizes do not apply to another model
    if over.get("temporal_loss", "none") != "none" and "temporal_weight" not in over:
        over["temporal_weight"] = 0.1
    return replace(cfg, **over)


def main(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        summary = train(cfg, args.out, resume=args.resume, force=args.force,
                        progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError, NonFiniteLossError) as e:
        print(f"viddiff train: {e}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if summary is not None and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
        if math.isfinite(summary["final_loss"]):
            print(f"run folder: {args.out} (checkpoint.pt, metrics.jsonl, loss.png, samples/)")
    return 0
