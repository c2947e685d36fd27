"""Train the video autoencoder of the latent route (``viddiff train-ae``).

    viddiff train-ae --preset cpu --out runs/ae          # ~1 h on one CPU core
    viddiff train --preset cpu --latent runs/ae ...      # diffusion in its latent space

The loop mirrors ``train.py`` (same guarantees): the clips of step ``s`` are a pure
function of ``(seed, s)``, so ``--resume`` continues exactly; checkpoints are atomic and
loaded with ``weights_only=True``; a non-finite loss stops the run with the last good
checkpoint kept.

The loss is an L1 reconstruction loss in which **object pixels weigh more**
(``object_weight``; MovingShapes ships the object masks): an object covers ~2% of a clip,
and an autoencoder trained on plain L1 learns the backgrounds first and returns the objects
grey and blurred, which is exactly what a probe (or a viewer) looks at.

At the end the run folder holds ``autoencoder.pt`` (weights, constructor arguments and the
per-channel latent statistics) and ``summary.json`` with the held-out reconstruction
quality: PSNR on fold-1 *test* clips (groups never seen in training), PSNR inside the
object masks, and the probe's accuracy on reconstructions next to its accuracy on the
originals (the most any diffusion model in this latent space can reach).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from viddiff_mini.models.autoencoder import VideoAutoencoder
from viddiff_mini.train import (
    NonFiniteLossError,
    StepBatches,
    _trim_metrics,
    plot_losses,
    prepare_run_dir,
    step_generator,
)
from viddiff_mini.utils import atomic_torch_save, atomic_write_bytes, safe_torch_load, tqdm

AE_FILE = "autoencoder.pt"


@dataclass
class AEConfig:
    preset: str = "custom"
    fold: int = 1                   # train on the train groups of this split
    frames: int = 16
    size: int = 32
    model_kwargs: dict[str, Any] = field(default_factory=dict)   # VideoAutoencoder arguments
    batch_size: int = 8
    lr: float = 1e-3
    warmup_steps: int = 50
    max_steps: int = 1000
    grad_clip: float = 1.0
    object_weight: float = 9.0      # extra L1 weight on object pixels (masks dilated by 1 px)
    log_every: int = 25
    ckpt_every: int = 250
    eval_clips: int = 256           # held-out fold test clips for the final report
    stat_clips: int = 256           # training clips for the latent mean/std
    time_limit_min: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


AE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(frames=8, size=16, batch_size=2, max_steps=6, warmup_steps=2, log_every=2,
                 ckpt_every=3, eval_clips=8, stat_clips=8,
                 model_kwargs=dict(latent_channels=4, widths=[8, 16])),
    # 16x32x32 clips -> 8 x 8 x 16 x 16 latents (2x in time and per side, 3x fewer values)
    "cpu": dict(frames=16, size=32, batch_size=8, max_steps=1000,
                model_kwargs=dict(latent_channels=8, widths=[32, 64], spatial_down=1,
                                  temporal_down=1, blocks=1, conv="2plus1d", causal=True)),
    # the same without temporal compression: 16x32x32 -> 8 x 16 x 16 x 16 (1.5x fewer
    # values). Why: msh-ae decodes each pair of frames nearly alike, so fast falls come back
    # as staircases and gravity fitted on its round trip of real throw / bounce clips is 59%
    # off (3.5% on the clips themselves); physics needs every frame
    "cpu-t1": dict(frames=16, size=32, batch_size=8, max_steps=1000,
                   model_kwargs=dict(latent_channels=8, widths=[32, 64], spatial_down=1,
                                     temporal_down=0, blocks=1, conv="2plus1d", causal=True)),
}


def get_ae_preset(name: str, **overrides: Any) -> AEConfig:
    from viddiff_mini.config import from_presets
    return from_presets(AEConfig, AE_PRESETS, name, what="autoencoder preset", **overrides)


# ============================================================================ loss
def object_weights(masks: torch.Tensor, weight: float) -> torch.Tensor:
    """Per-pixel weights (b, 1, t, h, w): 1 + ``weight`` on object pixels.

    ``masks`` (b, k, t, h, w) bool. The mask is dilated by one pixel so an object's
    anti-aliased edge counts as object."""
    m = masks.any(dim=1, keepdim=True).float()
    m = F.max_pool3d(m, (1, 3, 3), stride=1, padding=(0, 1, 1))
    return 1.0 + weight * m


def reconstruction_loss(rec: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Weighted mean absolute error, normalised by the mean weight."""
    return ((rec - x).abs() * w).mean() / w.mean()


# ============================================================================ saving / loading
def save_autoencoder(ae: VideoAutoencoder, path: str | Path, meta: dict | None = None) -> None:
    """The deployable file: constructor arguments, weights (with latent stats), metadata."""
    atomic_torch_save({"config": dict(ae.config), "state_dict": ae.state_dict(),
                       "meta": meta or {}}, path)


def load_autoencoder(path: str | Path, device="cpu") -> VideoAutoencoder:
    """A :class:`VideoAutoencoder` from ``autoencoder.pt`` or a run folder holding one."""
    path = Path(path)
    if path.is_dir():
        path = path / AE_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no autoencoder file; train one with "
                                f"`viddiff train-ae --out RUN` (it writes RUN/{AE_FILE})")
    state = safe_torch_load(path)
    ae = VideoAutoencoder(**state["config"])
    ae.load_state_dict(state["state_dict"])
    ae.meta = dict(state.get("meta", {}))  # clip shape it was trained on, its scores
    return ae.to(device).eval().requires_grad_(False)


# ============================================================================ evaluation
@torch.no_grad()
def evaluate_autoencoder(ae: VideoAutoencoder, n: int = 256, frames: int = 16, size: int = 32,
                         fold: int = 1, seed: int = 0, batch: int = 32,
                         probe: bool = True) -> dict[str, float]:
    """Reconstruction quality on ``n`` held-out test clips of ``fold`` (fixed choice).

    Returns PSNR over whole clips and inside object masks (dB, images in [-1, 1], so the
    peak-to-peak range is 2), and, with ``probe``, the probe's 101-way accuracy on the
    reconstructions and on the originals."""
    from viddiff_mini.data import synthetic

    test = synthetic.split_indices("test", fold)
    g = torch.Generator().manual_seed(seed)
    pick = [test[i] for i in torch.randperm(len(test), generator=g)[:n].tolist()]
    was_training = ae.training
    ae.eval()
    se, se_obj, n_obj, recs, reals, labels = [], 0.0, 0.0, [], [], []
    for i in range(0, len(pick), batch):
        b = synthetic.render_batch(pick[i:i + batch], frames=frames, size=size, truth=True)
        x = b["video"]
        rec = ae.decode(ae.encode(x)).clamp(-1, 1)
        err = (rec - x).pow(2)
        se.append(err.mean(dim=(1, 2, 3, 4)))
        m = b["masks"].any(dim=1, keepdim=True).expand_as(err)
        se_obj += float(err[m].sum())
        n_obj += float(m.sum())
        recs.append(rec)
        reals.append(x)
        labels.append(b["label"])
    ae.train(was_training)
    mse = torch.cat(se)
    out = {"psnr_db": float((10 * torch.log10(4.0 / mse.clamp_min(1e-10))).mean()),
           "object_psnr_db": float(10 * torch.log10(torch.tensor(4.0 / max(se_obj / max(n_obj, 1), 1e-10)))),
           "eval_clips": len(pick)}
    if probe:
        from viddiff_mini.metrics.probe import load_probe, probe_predict
        p = load_probe()
        y = torch.cat(labels)
        out["probe_accuracy_reconstructed"] = float((probe_predict(p, torch.cat(recs)) == y).float().mean())
        out["probe_accuracy_real"] = float((probe_predict(p, torch.cat(reals)) == y).float().mean())
    return out


def _stat_clips(cfg: AEConfig) -> torch.Tensor:
    from viddiff_mini.data import synthetic
    train = synthetic.split_indices("train", cfg.fold)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    pick = [train[i] for i in torch.randperm(len(train), generator=g)[:cfg.stat_clips].tolist()]
    return synthetic.render_batch(pick, frames=cfg.frames, size=cfg.size, seed=cfg.seed)["video"]


# ============================================================================ the loop
def train_autoencoder(cfg: AEConfig, out: str | Path, resume: bool = False, force: bool = False,
                      progress: bool = True, evaluate: bool = True) -> dict[str, Any]:
    """Train ``cfg`` into run folder ``out``; return the summary (also ``summary.json``)."""
    from viddiff_mini.data import synthetic

    out = Path(out)
    prepare_run_dir(cfg, out, resume, force, rank=0)
    ckpt_path, metrics_path = out / "checkpoint.pt", out / "metrics.jsonl"
    torch.manual_seed(cfg.seed)
    ae = VideoAutoencoder(**cfg.model_kwargs)
    ae.latent_shape(cfg.frames, cfg.size)  # a clip shape the factors do not divide fails here
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    start = 0
    if resume and ckpt_path.exists():
        state = safe_torch_load(ckpt_path)
        ae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        _trim_metrics(metrics_path, start)
        print(f"resumed {out} at step {start}", file=sys.stderr)
    elif metrics_path.exists():
        metrics_path.unlink()

    def checkpoint(step: int) -> None:
        atomic_torch_save({"config": json.loads(json.dumps(cfg.to_dict())),
                           "model": ae.state_dict(), "optimizer": opt.state_dict(),
                           "step": step}, ckpt_path)

    sampler = StepBatches(synthetic.split_indices("train", cfg.fold), cfg.batch_size, cfg.seed,
                          start, cfg.max_steps)
    bar = tqdm(total=cfg.max_steps, initial=start, disable=not progress, desc="train-ae",
               dynamic_ncols=True)
    t0 = time.perf_counter()
    step, loss_sum, count, last, stop_reason = start, 0.0, 0, float("nan"), "max_steps"
    ae.train()
    from viddiff_mini.train import stop_on_signal
    with stop_on_signal() as stopping, bar:   # SIGTERM / Ctrl-C: checkpoint, stop; bar closed
        for idx in sampler:
            lr = cfg.lr * min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
            for group in opt.param_groups:
                group["lr"] = lr
            b = synthetic.render_batch(idx, frames=cfg.frames, size=cfg.size, seed=cfg.seed,
                                       truth=True)
            x = b["video"]
            mean, logvar = ae.encode_raw(x)
            if ae.kl_weight:  # VAE: reparameterised sample, seeded by the step
                g = step_generator(cfg.seed, step, salt=5)
                z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=g)
            else:
                z = mean
            loss = reconstruction_loss(ae.decode_raw(z), x,
                                       object_weights(b["masks"], cfg.object_weight))
            if ae.kl_weight:
                kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
                loss = loss + ae.kl_weight * kl
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {step + 1}: stopping. The last good "
                    f"checkpoint ({ckpt_path}) is kept; lower --lr.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(ae.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            loss_sum += float(loss.detach())
            count += 1
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                last = loss_sum / count
                loss_sum, count = 0.0, 0
                with open(metrics_path, "a") as f:
                    f.write(json.dumps({"step": step, "loss": last, "lr": lr,
                                        "elapsed_s": round(time.perf_counter() - t0, 3)}) + "\n")
                bar.set_postfix(loss=f"{last:.4f}")
            bar.update(1)
            at_ckpt = step % cfg.ckpt_every == 0 or step == cfg.max_steps
            if at_ckpt:
                checkpoint(step)
            if stopping["signal"] is not None:
                stop_reason = f"signal ({stopping['signal']})"
            elif cfg.time_limit_min > 0 and time.perf_counter() - t0 > 60 * cfg.time_limit_min:
                stop_reason = "time_limit"
            if stop_reason != "max_steps":
                if not at_ckpt:                   # (at a checkpoint step: just written)
                    checkpoint(step)
                break

    elapsed = time.perf_counter() - t0
    summary: dict[str, Any] = {"step": step, "final_loss": last, "stop_reason": stop_reason,
                               "elapsed_s": elapsed,
                               "params": sum(p.numel() for p in ae.parameters()),
                               "latent_shape": list(ae.latent_shape(cfg.frames, cfg.size))}
    ae.eval()
    ae.fit_latent_stats(_stat_clips(cfg))
    if evaluate:
        summary.update(evaluate_autoencoder(ae, n=cfg.eval_clips, frames=cfg.frames,
                                            size=cfg.size, fold=cfg.fold, seed=cfg.seed))
    save_autoencoder(ae, out / AE_FILE, meta={"frames": cfg.frames, "size": cfg.size,
                                              "fold": cfg.fold, "steps": step, **{
                                                  k: v for k, v in summary.items()
                                                  if k.endswith(("_db", "_real", "_reconstructed"))}})
    if metrics_path.exists():
        plot_losses(metrics_path, out / "loss.png")
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    return summary


# ============================================================================ CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="cpu", help=f"one of {', '.join(AE_PRESETS)}")
    p.add_argument("--out", required=True, help="run folder (checkpoint, metrics, autoencoder.pt)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--force", action="store_true", help="overwrite an existing run in --out")
    p.add_argument("--steps", type=int, help="max training steps")
    p.add_argument("--minutes", type=float, help="stop after this many minutes (checkpointed)")
    p.add_argument("--batch", type=int, help="batch size")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--no-eval", action="store_true", help="skip the held-out PSNR/probe report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = get_ae_preset(args.preset)
        over = {name: getattr(args, arg) for arg, name in
                [("steps", "max_steps"), ("minutes", "time_limit_min"), ("batch", "batch_size"),
                 ("lr", "lr"), ("seed", "seed")] if getattr(args, arg) is not None}
        cfg = replace(cfg, **over)
        summary = train_autoencoder(cfg, args.out, resume=args.resume, force=args.force,
                                    progress=not args.quiet, evaluate=not args.no_eval)
    except (ValueError, FileExistsError, FileNotFoundError, NonFiniteLossError) as e:
        print(f"viddiff train-ae: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0
