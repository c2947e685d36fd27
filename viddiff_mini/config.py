"""Training configuration: one plain dataclass and three named presets.

    cfg = get_preset("tiny")                  # seconds on 2 CPU cores (tests)
    cfg = get_preset("cpu", max_steps=500)    # overrides by keyword
    cfg = get_preset("auto")                  # "gpu" when CUDA is present, else "cpu"

Every field is a plain value so a config round-trips through JSON (it is stored in each
checkpoint and in ``RUN/config.json``; a resumed run must match it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass
class TrainConfig:
    preset: str = "custom"
    # ---- data --------------------------------------------------------------------------
    data: str = "shapes"            # "shapes" | "ucf101:PATH" | "folder:PATH"
    fold: int = 1                   # UCF-101-style split 1..3 (train groups only are used)
    num_classes: int = 101          # first K classes of the data set (a subset trains faster)
    classes: list[str] = field(default_factory=list)  # or these classes by name (sets num_classes)
    frames: int = 16
    size: int = 64
    num_workers: int = 0            # DataLoader workers for real video (shapes render in-process)
    # ---- model -------------------------------------------------------------------------
    latent: str = ""                # "" = pixel space; else an autoencoder (run folder, file or
                                    # pretrained name): diffusion runs in its latent space
    model: str = "unet3d"           # a name in viddiff_mini.models.registry
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    conditions: list[str] = field(default_factory=lambda: ["label"])
    cond_drop: float = 0.1          # condition dropout, so one model also learns p(x) for CFG
    # ---- diffusion ---------------------------------------------------------------------
    schedule: str = "cosine"        # "cosine" | "linear" | "flow"
    objective: str = "v"            # "eps" | "v" | "flow"
    temporal_loss: str = "none"     # a name in analysis.consistency.TEMPORAL_LOSSES
    temporal_weight: float = 0.0
    object_weight: float = 0.0      # extra loss weight where objects are (MovingShapes masks)
    virtual_pans: int = 0           # MovingShapes: each clip also under this many camera pans
    virtual_moves: int = 0          # MovingShapes: each straight-path clip also this many times
                                    # slowed and moved (synthetic.relocate)
    init: str = ""                  # fine-tuning: start from these weights (a run folder or a
                                    # pretrained generator's name); "" = random init
    # ---- optimisation ------------------------------------------------------------------
    batch_size: int = 8             # global batch (split across DDP ranks)
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    max_steps: int = 1000
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ema_start: int = 0              # steps before the EMA starts tracking (EMA = weights before)
    # ---- speed -------------------------------------------------------------------------
    amp: bool = True                # bf16 autocast on CUDA (ignored on CPU: fp32 there)
    compile: bool = False           # torch.compile the model (CUDA only)
    grad_checkpoint: bool = False
    # ---- logging / checkpoints / samples -----------------------------------------------
    log_every: int = 10
    ckpt_every: int = 200
    sample_every: int = 0           # 0 = only at the end
    sample_n: int = 8
    sample_steps: int = 50
    sampler: str = "ddim"
    guidance: float = 2.0           # classifier-free guidance scale for the run's samples
    time_limit_min: float = 0.0     # > 0: stop (with a checkpoint) after this many minutes
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.virtual_pans, int) and self.virtual_pans >= 0):
            raise ValueError(f"virtual_pans: expected an int >= 0 (panned copies of each "
                             f"clip), got {self.virtual_pans!r}")
        if not (isinstance(self.virtual_moves, int) and self.virtual_moves >= 0):
            raise ValueError(f"virtual_moves: expected an int >= 0 (moved copies of each "
                             f"clip), got {self.virtual_moves!r}")
        if self.classes:
            from viddiff_mini.data.synthetic import class_ids_of
            class_ids_of(self.classes)      # unknown names refused here, with the names
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes: each class once, got {self.classes}")
            self.classes = list(self.classes)
            self.num_classes = len(self.classes)

    def class_ids(self) -> list[int]:
        """Data-set class id of each run label 0..num_classes-1 (the first K, or ``classes``)."""
        if not self.classes:
            return list(range(self.num_classes))
        from viddiff_mini.data.synthetic import class_ids_of
        return class_ids_of(self.classes)

    def class_names(self) -> list[str]:
        """Name of each run label (MovingShapes-101 names; real data: the first K of its list)."""
        from viddiff_mini.data.synthetic import CLASS_NAMES
        return [CLASS_NAMES[i] for i in self.class_ids()]

    def sampling_guidance(self, guidance=None):
        """The classifier-free guidance to sample with: ``guidance`` when given (a scale or
        ``{control: scale}``), else the run's own; a scale of 1.0 -> None (the plain
        conditional model, one pass per step). Samples, `viddiff sample` and the control
        metrics of `viddiff eval` all resolve it here, so they use the same guidance."""
        guidance = self.guidance if guidance is None else guidance
        if not isinstance(guidance, dict) and float(guidance) == 1.0:
            return None
        return guidance

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)


# classes of the cpu preset: one shape each, eight different motions (the alphabetically
# first ten are four Approach shapes, four Blink shapes and two Bounce: nearly one motion)
MAIN_CLASSES = ("MoveLeftSquare", "MoveRightSquare", "MoveUpSquare", "MoveDownSquare",
                "BounceSquare", "ApproachSquare", "BlinkSquare", "PanLeftSquare")

# classes of msh-class24 (the cpu-class24 preset): the four directions with squares and
# with triangles, fast circles both ways, bounce, roll, throw, zig-zag, diagonal slide,
# orbit, approach and recede, blink, colour change, camera pans both ways and zooms both
# ways. msh-ae reconstructs them well enough for the probe (99.0% of 96 held-out
# reconstructions recognised among these 24; 100% of the originals).
CLASSES_24 = (*MAIN_CLASSES[:4], "MoveLeftTriangle", "MoveRightTriangle", "MoveUpTriangle",
              "MoveDownTriangle", "MoveLeftFastCircle", "MoveRightFastCircle", "BounceSquare",
              "RollCircle", "ThrowCircle", "ZigZagSquare", "SlideDiagonalSquare", "OrbitSquare",
              "ApproachSquare", "RecedeSquare", "BlinkSquare", "ChangeColorSquare",
              "PanLeftSquare", "PanRightSquare", "ZoomInSquare", "ZoomOutSquare")

# classes of msh-text (the cpu-text preset): captions name the colour (random per clip),
# the shape and the direction, and the throws and soft bounces have ordered events
# ("is thrown right, rises, then falls"), so colour, direction and event order are all
# checked on the samples (metrics/control.py text_video_consistency)
CLASSES_TEXT = (*MAIN_CLASSES[:4], "MoveLeftTriangle", "MoveRightTriangle", "MoveUpTriangle",
                "MoveDownTriangle", "MoveLeftFastCircle", "MoveRightFastCircle",
                "ThrowCircle", "ThrowSquare", "BounceSoftCircle", "BounceSoftSquare",
                "BounceSquare", "ZigZagSquare")

# classes of msh-first-frame (cpu-first-frame): object motion in four directions and camera
# pans both ways, so "camera vs object motion" (the first_frame control's motion vector)
# has examples of each to separate
CLASSES_FIRST_FRAME = (*MAIN_CLASSES[:4], "MoveLeftTriangle", "MoveRightTriangle",
                       "MoveUpTriangle", "MoveDownTriangle", "MoveLeftCircle",
                       "MoveRightCircle", "PanLeftSquare", "PanRightSquare", "PanLeftCircle",
                       "PanRightCircle", "BounceSquare", "OrbitSquare")

# classes of msh-trajectory (cpu-trajectory): paths of every kind (straight, diagonal,
# zig-zag, orbit, ballistic, bouncing), so held-out paths are not just one direction
CLASSES_TRAJECTORY = (*MAIN_CLASSES[:4], "MoveLeftCircle", "MoveRightCircle", "MoveUpCircle",
                      "MoveDownCircle", "SlideDiagonalSquare", "SlideDiagonalCircle",
                      "ZigZagSquare", "OrbitSquare", "ThrowCircle", "ThrowSquare",
                      "BounceSquare", "BounceCircle")

PRESETS: dict[str, dict[str, Any]] = {
    # tests: a few seconds on 2 CPU cores
    "tiny": dict(
        num_classes=4, frames=8, size=16, batch_size=4, max_steps=30, warmup_steps=5,
        lr=1e-3, ema_decay=0.9, log_every=5, ckpt_every=10, sample_n=4, sample_steps=8,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2), attn_levels=(1,), heads=2),
    ),
    # the main job on a laptop CPU: latent diffusion in the shipped autoencoder's space
    # (16x32x32 clips -> 8x8x16x16 latents) over 8 classes chosen for distinct motion
    # (linear in four directions, bounce, approach, blink, camera pan), so 30 minutes on 2
    # cores give clips the probe recognises; see README "Measured numbers"
    "cpu": dict(
        classes=list(MAIN_CLASSES), frames=16, size=32, latent="msh-ae", object_weight=9.0,
        batch_size=8,
        max_steps=6000, warmup_steps=100, lr=1e-3, ema_decay=0.999, log_every=25,
        ckpt_every=250, sample_every=0, sample_n=16, sample_steps=50,
        # guidance 4 vs 2 on msh-class8 (3,295 steps): 73.8% vs 67.5% in-run-class accuracy
        guidance=4.0,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2, 2), attn_levels=(2,), heads=2),
    ),
    # msh-class24: the cpu preset's recipe over 24 classes, trained for longer (20,000 steps,
    # ~2.5 h on one thread; run in parts with --minutes and --resume, which is exact)
    "cpu-class24": dict(
        classes=list(CLASSES_24), frames=16, size=32, latent="msh-ae", object_weight=9.0,
        batch_size=8, max_steps=20000, warmup_steps=100, lr=1e-3, ema_decay=0.999,
        log_every=50, ckpt_every=250, sample_every=0, sample_n=24, sample_steps=50,
        guidance=4.0,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2, 2), attn_levels=(2,), heads=2),
    ),
    # msh-text: the cpu preset's U-Net and latent, conditioned on the caption alone through
    # the temporal text encoder: cross-attention at the 4x4 level plus the pooled caption
    # added to the time embedding (context_pool; with cross-attention alone, 4,036 steps
    # gave 6% in-run-class accuracy, chance level), 16 classes; 20,000 steps like msh-class24
    # (the lr is constant after warm-up, so a --minutes stop is the same run cut shorter)
    "cpu-text": dict(
        classes=list(CLASSES_TEXT), conditions=["text"], frames=16, size=32, latent="msh-ae",
        object_weight=9.0, batch_size=8, max_steps=20000, warmup_steps=100, lr=1e-3,
        ema_decay=0.999, log_every=50, ckpt_every=250, sample_every=0, sample_n=16,
        sample_steps=50, guidance=4.0,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2, 2), attn_levels=(2,), heads=2,
                          context_pool=True),
    ),
    # msh-first-frame: image animation; the first frame (rgb on every frame + indicator
    # maps, folded onto the latent grid) and the requested camera / object motion (a
    # 6-vector); 20,000 steps like msh-class24. With the image on frame 0 only, 16,046 steps
    # let backgrounds fade after frame 0 and left camera requests moving the object (53%
    # camera/object split); see control/animate.py first_frame_maps
    "cpu-first-frame": dict(
        classes=list(CLASSES_FIRST_FRAME), conditions=["first_frame"], frames=16, size=32,
        latent="msh-ae", object_weight=9.0, batch_size=8, max_steps=20000, warmup_steps=100,
        lr=1e-3, ema_decay=0.999, log_every=50, ckpt_every=250, sample_every=0, sample_n=16,
        sample_steps=50, guidance=2.0,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2, 2), attn_levels=(2,), heads=2),
    ),
    # msh-first-frame: msh-first-frame-base (cpu-first-frame's weights) fine-tuned so the
    # object follows the motion request, not the image: its classes, where each Move clip
    # also appears slowed and moved elsewhere in the frame (virtual_moves;
    # synthetic.relocate), so one image goes several ways. 6,000 steps at half the lr
    "cpu-first-frame-moves": dict(
        classes=list(CLASSES_FIRST_FRAME), conditions=["first_frame"], frames=16, size=32,
        latent="msh-ae", object_weight=9.0, virtual_moves=1, init="msh-first-frame-base",
        batch_size=8, max_steps=6000, warmup_steps=100, lr=5e-4, ema_decay=0.999,
        log_every=50, ckpt_every=250, sample_every=0, sample_n=16, sample_steps=50,
        guidance=2.0,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2, 2), attn_levels=(2,), heads=2),
    ),
    # msh-trajectory: where (the objects' paths as heatmap + displacement maps) and what (the
    # caption names colour and shape, which the trajectory metric tracks by colour). The
    # pooled caption also joins the time embedding (context_pool, as in cpu-text): with
    # cross-attention alone, 3,288 steps followed the caption's colour in 9% of samples
    "cpu-trajectory": dict(
        classes=list(CLASSES_TRAJECTORY), conditions=["text", "trajectory"], frames=16,
        size=32, latent="msh-ae", object_weight=9.0, batch_size=8, max_steps=20000,
        warmup_steps=100, lr=1e-3, ema_decay=0.999, log_every=50, ckpt_every=250,
        sample_every=0, sample_n=16, sample_steps=50, guidance=2.0,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2, 2), attn_levels=(2,), heads=2,
                          context_pool=True),
    ),
    # the pixel-space cpu preset (the main job until 2026-12): 10 classes at 16x32x32, ~3 s
    # per step on 2 cores (the pixel side of the pixel-vs-latent comparison)
    "cpu-pixel": dict(
        num_classes=10, frames=16, size=32, batch_size=8, max_steps=6000, warmup_steps=200,
        lr=4e-4, ema_decay=0.999, log_every=25, ckpt_every=250, sample_every=1000,
        sample_n=10, sample_steps=50,
        model_kwargs=dict(base_channels=16, channel_mults=(1, 2, 4), attn_levels=(1, 2), heads=4),
    ),
    # one H100: all 101 classes, 16x64x64, class-conditional with CFG. Sized by the memory
    # model (`viddiff bench memory --preset gpu`, FakeTensorMode, no GPU): batch 48 with
    # gradient checkpointing is estimated at ~45 GiB for the U-Net (65.9M) and ~28 GiB for
    # the DiT-S/2, within 60 GiB of an 80 GB H100 (batch 64 without checkpointing: ~165 GiB).
    # 1,260 steps = 20 minutes of H100 at 20% MFU (188 TFLOP of model FLOPs per step) =
    # 6.3 passes over the 9,607 fold-1 training clips; warm-up 5% of that. Pinned by tests.
    "gpu": dict(
        num_classes=101, frames=16, size=64, batch_size=48, grad_checkpoint=True,
        max_steps=1260, warmup_steps=60, lr=3e-4, ema_decay=0.999, log_every=50,
        ckpt_every=250, sample_every=500, sample_n=16, sample_steps=50, compile=True,
        model_kwargs=dict(base_channels=128, channel_mults=(1, 2, 2, 2), attn_levels=(2, 3),
                          heads=8),
    ),
}

# the same recipes in the latent space of msh-ae-t1 (every frame kept, 8x16x16x16 latents):
# on msh-ae's round trip of real clips gravity fits 59% off (3.5% on the clips) and caption
# colour is named in 75% of 32 held-out clips; on msh-ae-t1's, 3.0% and 96.9%
# (scripts/ae_floors.py): the first msh-trajectory's gravity (43% off) sat on msh-ae's floor,
# which no training on its latents can lower; cpu-trajectory-t1 (12,750 steps, 148 min) fits
# it 3.2% off and is the shipped msh-trajectory; cpu-text-t1 (20,000 steps, 213 min) names
# the caption colour in 100% of 32 held-out captions (87.5% on msh-ae) and is the shipped
# msh-text. Twice the latent frames: about twice the CPU time per step.
for _name in ("cpu-trajectory", "cpu-text"):
    PRESETS[f"{_name}-t1"] = {**PRESETS[_name], "latent": "msh-ae-t1"}


def from_presets(cls, presets: dict[str, dict[str, Any]], name: str, what: str = "preset",
                 extra_names: tuple[str, ...] = (), **overrides: Any):
    """``cls(preset=name, **presets[name], **overrides)``, copying ``model_kwargs`` so a
    caller's edits never reach the preset table; an unknown name lists the valid ones."""
    if name not in presets:
        raise ValueError(f"preset: unknown {what} {name!r}; valid presets: "
                         f"{', '.join([*presets, *extra_names])}")
    values = dict(presets[name])
    values["model_kwargs"] = dict(values.get("model_kwargs", {}))
    values.update(overrides)
    return cls(preset=name, **values)


def get_preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with keyword overrides; ``"auto"`` = ``gpu`` with CUDA, else ``cpu``."""
    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    return from_presets(TrainConfig, PRESETS, name, extra_names=("auto",), **overrides)


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``"shapes"`` -> ("shapes", None); ``"ucf101:/data/UCF"`` -> ("ucf101", "/data/UCF")."""
    kind, _, path = spec.partition(":")
    valid = "shapes | ucf101:PATH | folder:PATH"
    if kind == "shapes" and not path:
        return "shapes", None
    if kind in ("ucf101", "folder"):
        if not path:
            raise ValueError(f"--data {spec!r}: {kind} needs a path, e.g. {kind}:/data/videos "
                             f"(valid: {valid})")
        return kind, path
    raise ValueError(f"--data {spec!r}: unknown data spec; valid: {valid}")
