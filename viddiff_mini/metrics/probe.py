"""The probe: a small video classifier that tells whether a model's samples are real.

A generated clip of class k should be *recognised* as class k by a classifier trained on
real clips. The probe is that classifier for MovingShapes-101: a compact 3D CNN trained on
the train split of fold 1 (``viddiff eval train-probe``), reaching >= 95% on the test
groups. Its penultimate features also serve as the feature space of ``FVD-probe``
(``metrics/fvd.py``) -- a *different* number from the published I3D-based FVD, and always
reported under that name.

Every input is resized to the probe's own ``(frames, size, size)`` first, so samples of any
length and resolution can be scored.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from viddiff_mini.utils import atomic_torch_save, check_video, safe_torch_load, tqdm

DEFAULT_PROBE = Path(__file__).parent / "weights" / "probe_msh101.pt"


@dataclass
class ProbeConfig:
    num_classes: int = 101
    frames: int = 16
    size: int = 32
    width: int = 32
    feature_dim: int = 128


def _block(c_in: int, c_out: int, stride: tuple[int, int, int]) -> nn.Sequential:
    """(2+1)D residual-free block: 1x3x3 spatial conv, then 3x1x1 temporal conv.

    Factorised like R(2+1)D (section 11.2.1): about a third of a full 3x3x3 conv's cost,
    which keeps probe training to minutes on a CPU.
    """
    st, sh, sw = stride
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, (1, 3, 3), stride=(1, sh, sw), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(c_out), nn.SiLU(),
        nn.Conv3d(c_out, c_out, (3, 1, 1), stride=(st, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(c_out), nn.SiLU(),
    )


class Probe(nn.Module):
    """(2+1)D CNN classifier: (b, 3, t, h, w) in [-1, 1] -> logits (b, num_classes).

    ``features(x)`` returns the (b, feature_dim) pooled embedding used by FVD-probe.
    """

    def __init__(self, cfg: ProbeConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ProbeConfig()
        w = cfg.width
        self.body = nn.Sequential(
            nn.Conv3d(3, w, (1, 2, 2), stride=(1, 2, 2)),     # patchify: 16 x 16 x 16
            _block(w, w, (1, 1, 1)),
            _block(w, 2 * w, (2, 2, 2)),                      # 8 x 8 x 8
            _block(2 * w, 2 * w, (1, 1, 1)),
            _block(2 * w, cfg.feature_dim, (2, 2, 2)),        # 4 x 4 x 4
            _block(cfg.feature_dim, cfg.feature_dim, (1, 1, 1)),
        )
        self.head = nn.Linear(cfg.feature_dim, cfg.num_classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Resize any (b, 3, t, h, w) clip to the probe's (frames, size, size)."""
        check_video(x, "video", channels=3)
        target = (self.cfg.frames, self.cfg.size, self.cfg.size)
        if tuple(x.shape[2:]) != target:
            x = F.interpolate(x.float(), size=target, mode="trilinear", align_corners=False)
        return x.float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, t, h, w) -> (b, feature_dim) global-average-pooled features."""
        return self.body(self.prepare(x)).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def save_probe(probe: Probe, path: str | Path, meta: dict | None = None) -> None:
    atomic_torch_save({"config": asdict(probe.cfg), "state": probe.state_dict(),
                       "meta": meta or {}}, path)


def load_probe(path: str | Path | None = None, device="cpu") -> Probe:
    """Load a probe file (default: the one shipped with the package, if present)."""
    path = Path(path) if path is not None else DEFAULT_PROBE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no probe weights. Train one with `viddiff eval train-probe --out {path}`")
    state = safe_torch_load(path)
    if not isinstance(state, dict) or "state" not in state or "config" not in state:
        raise ValueError(f"{path}: not a probe file (expected keys 'config' and 'state')")
    probe = Probe(ProbeConfig(**state["config"]))
    probe.load_state_dict(state["state"])
    probe.meta = state.get("meta", {})
    return probe.to(device).eval()


@torch.no_grad()
def probe_predict(probe: Probe, videos: torch.Tensor, batch: int = 64,
                  restrict_to: list[int] | None = None) -> torch.Tensor:
    """Predicted labels (n,) for videos (n, 3, t, h, w), in batches.

    ``restrict_to``: class ids; the argmax is taken over those classes only (a model
    trained on 8 classes is asked "which of *your* classes is this?")."""
    device = next(probe.parameters()).device
    mask = None
    if restrict_to is not None:
        mask = torch.full((probe.cfg.num_classes,), float("-inf"), device=device)
        mask[torch.as_tensor(list(restrict_to), device=device)] = 0.0
    out = []
    for i in range(0, len(videos), batch):
        logits = probe(videos[i:i + batch].to(device))
        out.append((logits if mask is None else logits + mask).argmax(-1).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def probe_accuracy(probe: Probe, videos: torch.Tensor, labels: torch.Tensor,
                   restrict_to: list[int] | None = None) -> dict:
    """Accuracy overall and per class of the probe on (videos, labels) (data-set ids);
    ``restrict_to`` as in :func:`probe_predict`."""
    pred = probe_predict(probe, videos, restrict_to=restrict_to)
    labels = labels.cpu()
    per_class = {}
    for k in labels.unique().tolist():
        sel = labels == k
        per_class[int(k)] = float((pred[sel] == k).float().mean())
    return {"accuracy": float((pred == labels).float().mean()) if len(labels) else float("nan"),
            "per_class": per_class, "n": int(len(labels))}


def evaluate_on_split(probe: Probe, split: str = "test", fold: int = 1, n: int | None = 2000,
                      frames: int = 16, size: int = 64, seed: int = 0, classes=None,
                      device="cpu", batch: int = 64, progress: bool = False) -> dict:
    """Probe accuracy on (a seeded subset of) a MovingShapes-101 split."""
    from viddiff_mini.data import synthetic

    pool = synthetic.split_indices(split, fold)
    if classes is not None:
        table = synthetic.clip_index_table()
        keep = set(classes)
        pool = [i for i in pool if table[i][0] in keep]
    if n is not None and n < len(pool):
        g = torch.Generator().manual_seed(seed)
        pool = [pool[i] for i in torch.randperm(len(pool), generator=g)[:n].tolist()]
    correct = 0
    probe.eval()
    for i in tqdm(range(0, len(pool), batch), disable=not progress, desc="probe eval"):
        b = synthetic.render_batch(pool[i:i + batch], frames=frames, size=size, device=device)
        with torch.no_grad():
            correct += int((probe(b["video"]).argmax(-1) == b["label"].to(device)).sum())
    return {"accuracy": correct / max(len(pool), 1), "n": len(pool), "split": split,
            "fold": fold}


def train_probe(out: str | Path | None = None, steps: int = 3000, batch: int = 32,
                lr: float = 2e-3, fold: int = 1, frames: int = 16, size: int = 64,
                num_classes: int = 101, cfg: ProbeConfig | None = None, seed: int = 0,
                device=None, progress: bool = True, eval_n: int | None = 2000,
                init: str | Path | None = None) -> tuple[Probe, dict]:
    """Train the probe on MovingShapes-101 train groups; evaluate on the fold's test groups.

    ``init``: a probe file to continue from (fine-tuning; its config wins over ``cfg``).

    Clips are rendered at the data set's size (64 by default) and resized by the probe, so
    training sees exactly the preprocessing that scoring a model's samples will see.
    """
    from viddiff_mini.data import synthetic

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = cfg or ProbeConfig(num_classes=num_classes)
    torch.manual_seed(seed)
    probe = load_probe(init, device=device).train() if init is not None else Probe(cfg).to(device)
    cfg = probe.cfg
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=0.05)
    # one-cycle warm-up and decay; a run too short for a warm-up phase keeps lr constant
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                 pct_start=0.1) if steps >= 20
             else torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0))
    table = synthetic.clip_index_table()
    pool = torch.tensor([i for i in synthetic.split_indices("train", fold)
                         if table[i][0] < num_classes])
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    bar = tqdm(range(steps), disable=not progress, desc="train probe")
    probe.train()
    for step in bar:
        idx = pool[torch.randint(len(pool), (batch,), generator=g)].tolist()
        # a fresh seed per step renders new variations of the same clips: augmentation
        b = synthetic.render_batch(idx, frames=frames, size=size, device=device,
                                   seed=int(torch.randint(1 << 30, (1,), generator=g)))
        loss = F.cross_entropy(probe(b["video"]), b["label"].to(device), label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    probe.eval()
    result = {"train_steps": steps, "train_seconds": time.perf_counter() - t0,
              "device": str(device)}
    if eval_n != 0:
        result.update(evaluate_on_split(probe, "test", fold, n=eval_n, frames=frames, size=size,
                                        classes=range(num_classes), device=device,
                                        progress=progress))
    if out is not None:
        save_probe(probe, out, meta=result)
    return probe, result


def probe_main(args: argparse.Namespace) -> int:
    """`viddiff eval train-probe` (arguments defined in ``viddiff_mini.evaluate``)."""
    _, result = train_probe(args.out, steps=args.steps, batch=args.batch, lr=args.lr,
                            num_classes=args.classes, eval_n=args.eval_n,
                            init=getattr(args, "init", None), seed=args.seed)
    print(json.dumps(result, indent=2))
    print(f"probe written to {args.out}", file=sys.stderr)
    return 0
