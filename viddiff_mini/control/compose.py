"""Composable control: any subset of controls -> one model's condition dict (11.3 frontier box,
Exercise 11.3 part 4).

One model, many controls. A *control* is what a user asks for; a *model input* is one of the
four conditioning keys every model understands (CONTRACTS "Models"):

===========  ==========================================  ==================================
control      what it is                                   model input (``route="input"``)
===========  ==========================================  ==================================
label        class index (b,)                             ``label``
text         caption -> :class:`~.text.TemporalTextEncoder` tokens   ``context`` (cross-attention)
trajectory   per-object paths (b, k, t, 2) px ->          ``concat`` 3k channels (Gaussian
             heatmaps + displacement maps                 heatmaps k, displacement 2k)
first_frame  image (b, 3, h, w) + optional camera /       ``concat`` 4 channels (rgb on frame
             object motion (11.3.2)                       0 + indicator) and ``vector`` 6
style        style code of a reference clip (11.3.4)      ``vector`` STYLE_DIM + 1 (flag)
attributes   ``{"speed": 2.0, "colour": "red"}`` (11.3.5)  ``vector`` attribute_dim()
===========  ==========================================  ==================================

``route="attention"`` (attention-level fusion) instead turns every control except the label
into *tokens* of the ``context`` (trajectory: one token per object and frame; first frame:
4x4 patch tokens + a motion token; style and attributes: one token each), each segment
tagged with a fixed type embedding, so the model's cross-attention decides per pixel how
much each control matters. Token features are fixed seeded random projections: nothing to
train outside the diffusion model.

Keep masks (per-control dropout, classifier-free guidance). Each control has its own keep
bit per sample. Several controls may share one model input, so the bits combine:

* a dropped control inside a kept input is **zeroed** (its maps, its vector slice -- whose
  presence flags are part of the slice, so zero reads as "absent") or, in the context, its
  tokens are masked out (``context_mask`` False);
* the input's own ``<input>_keep`` is the **OR** of its controls' bits: it is False only
  when every control routed there is dropped, and the model then uses its null embedding
  (null label / null vector / null context token / zero maps).

So one trained model answers any subset of its controls, and guidance can treat each
control separately: :class:`ControlGuidance` computes
``f = f(null) + sum_k w_k (f(only k) - f(null))`` per control (composable diffusion,
Liu et al. 2022) or ``f(null) + w (f(all) - f(null))`` for a single joint scale.

Conflicts (:func:`detect_conflicts`, :func:`resolve_conflicts`): a caption that says "moves
left" while the trajectory goes right, a colour word that disagrees with the colour
attribute, an attribute speed or direction that disagrees with the trajectory, a first frame
whose object is not where the trajectory starts. They are detected, reported and resolved
by a documented policy: ``"priority"`` (the lower control in :data:`PRIORITY` is dropped),
``"weights"`` (its guidance weight is multiplied by ``down_weight``) or ``"error"``. A
*hard* conflict (first frame vs trajectory start: both pin pixels) cannot be weighed: with
``"error"`` it raises, otherwise the trajectory is translated to start at the object seen
in the first frame and the shift is reported.

Entry points: :func:`model_kwargs_for` and :func:`build_cond` (training, used by
``viddiff_mini.train``), :func:`cond_for_spec` and :func:`compose` (sampling from a user
request), :class:`ControlGuidance` (per-control CFG), :func:`drop_controls`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .animate import (
    FIRST_FRAME_CHANNELS,
    MOTION_DIM,
    MOTION_SCALE,
    check_image,
    encode_motion,
    first_frame_maps,
)
from .attributes import ATTRIBUTE_COLORS, attribute_dim, encode_attributes
from .style import STYLE_DIM, style_code
from .trajectory import TrajectoryReport, check_trajectories, displacement_maps, trajectory_heatmaps

__all__ = [
    "CONDITIONS", "ROUTES", "PRIORITY", "MAX_OBJECTS", "TRAJ_CHANNELS", "STYLE_VECTOR",
    "TEXT_DIM", "Layout", "make_layout", "model_kwargs_for", "build_cond", "spec_to_values",
    "encode_values", "cond_for_spec", "drop_controls", "ControlGuidance", "Conflict",
    "ConflictReport", "detect_conflicts", "resolve_conflicts", "ComposedControl", "compose",
    "check_conditions", "trajectory_sigma", "truth_batch_for_labels", "truth_cond_for_labels",
]

CONDITIONS = ("label", "text", "trajectory", "first_frame", "style", "attributes")
ROUTES = ("input", "attention")
# Resolution order for conflicts, strongest first. Explicit spatial controls (pixels of
# the first frame, a drawn path) are more specific than numbers (attributes), which are
# more specific than words; style only says how things look; a class label is coarsest.
PRIORITY = ("first_frame", "trajectory", "attributes", "text", "style", "label")
MAX_OBJECTS = 2                              # MovingShapes-101 has at most two objects
TRAJ_CHANNELS = 3 * MAX_OBJECTS              # heatmap + (dx, dy) displacement per object
STYLE_VECTOR = STYLE_DIM + 1                 # style code + presence flag
TEXT_DIM = 64                                # the default caption encoder's width
PART_DROP = 0.3                              # training: drop single attributes / motion parts


# ============================================================================ layout
def check_conditions(conditions) -> list[str]:
    """Validate a list of control names (clear errors for typos, duplicates, empty)."""
    if isinstance(conditions, str):
        conditions = [c.strip() for c in conditions.split(",") if c.strip()]
    conditions = list(conditions or [])
    if not conditions:
        raise ValueError(f"conditions: expected at least one of {list(CONDITIONS)}, got none")
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise ValueError(f"conditions: unknown control(s) {bad}; expected names from "
                         f"{list(CONDITIONS)}")
    dup = sorted({c for c in conditions if conditions.count(c) > 1})
    if dup:
        raise ValueError(f"conditions: {dup} given more than once")
    return [c for c in CONDITIONS if c in conditions]      # canonical order


@dataclass
class Layout:
    """Where each control lives in the model inputs.

    concat / vector: ``{control: slice}`` of channels / features, in canonical order.
    context: the controls whose tokens go to the ``context`` (in order); ``tokens`` is
    filled by :func:`encode_values` with each control's token range of the encoded batch.
    """

    conditions: list[str]
    route: str = "input"
    concat: dict[str, slice] = field(default_factory=dict)
    vector: dict[str, slice] = field(default_factory=dict)
    context: list[str] = field(default_factory=list)
    label: bool = False
    text_dim: int = TEXT_DIM
    tokens: dict[str, slice] = field(default_factory=dict)

    @property
    def concat_channels(self) -> int:
        return max((s.stop for s in self.concat.values()), default=0)

    @property
    def vector_dim(self) -> int:
        return max((s.stop for s in self.vector.values()), default=0)

    def inputs_of(self, control: str) -> list[str]:
        """The model inputs a control writes to."""
        out = []
        if control == "label" and self.label:
            out.append("label")
        if control in self.context:
            out.append("context")
        if control in self.concat:
            out.append("concat")
        if control in self.vector:
            out.append("vector")
        return out


def make_layout(conditions, route: str = "input", text_dim: int = TEXT_DIM) -> Layout:
    """The :class:`Layout` of ``conditions`` under ``route`` ("input" or "attention")."""
    conditions = check_conditions(conditions)
    if route not in ROUTES:
        raise ValueError(f"route: expected one of {ROUTES}, got {route!r}")
    lay = Layout(conditions, route, text_dim=text_dim, label="label" in conditions)
    if route == "attention":
        lay.context = [c for c in conditions if c != "label"]
        return lay
    widths_concat = {"trajectory": TRAJ_CHANNELS, "first_frame": FIRST_FRAME_CHANNELS}
    widths_vector = {"first_frame": MOTION_DIM, "style": STYLE_VECTOR,
                     "attributes": attribute_dim()}
    c0 = v0 = 0
    for c in conditions:
        if c in widths_concat:
            lay.concat[c] = slice(c0, c0 + widths_concat[c])
            c0 += widths_concat[c]
        if c in widths_vector:
            lay.vector[c] = slice(v0, v0 + widths_vector[c])
            v0 += widths_vector[c]
    if "text" in conditions:
        lay.context = ["text"]
    return lay


def model_kwargs_for(conditions, frames: int, size: int, route: str = "input",
                     num_classes: int | None = None, text_dim: int = TEXT_DIM) -> dict:
    """Model constructor kwargs for a model that reads ``conditions``.

    Returns the subset of ``context_dim`` / ``concat_channels`` / ``vector_dim`` /
    ``num_classes`` that the controls need (``num_classes`` defaults to the 101 classes
    of MovingShapes-101; the trainer overrides it with the config's). frames, size: the
    clip shape, validated here (maps are built at that size).
    """
    if not (isinstance(frames, int) and frames >= 2):
        raise ValueError(f"frames: expected an int >= 2, got {frames!r}")
    if not (isinstance(size, int) and size >= 8):
        raise ValueError(f"size: expected an int >= 8 (pixels), got {size!r}")
    lay = make_layout(conditions, route, text_dim)
    out: dict = {}
    if lay.label:
        from viddiff_mini.data.synthetic import NUM_CLASSES
        out["num_classes"] = num_classes or NUM_CLASSES
    if lay.context:
        out["context_dim"] = text_dim
    if lay.concat_channels:
        out["concat_channels"] = lay.concat_channels
    if lay.vector_dim:
        out["vector_dim"] = lay.vector_dim
    return out


def trajectory_sigma(size: int) -> float:
    """Width (px) of the trajectory heatmaps at a frame size: 1 px at 16, 2.7 px at 64."""
    return max(1.0, size / 24)


# ============================================================================ token features
_PROJ: dict = {}


def _fixed(name: str, rows: int, cols: int, device) -> torch.Tensor:
    """A fixed random matrix ``(rows, cols)`` (seeded by ``name``), cached per device."""
    key = (name, rows, cols, str(device))
    if key not in _PROJ:
        g = torch.Generator().manual_seed(sum(ord(c) * 31**i for i, c in enumerate(name)) % 2**31)
        _PROJ[key] = (torch.randn(rows, cols, generator=g) / math.sqrt(rows)).to(device)
    return _PROJ[key]


def _fourier(x: torch.Tensor, n: int = 4) -> torch.Tensor:
    """``(..., d)`` values in ~[0, 1] -> ``(..., 2 n d)`` sin/cos features."""
    freq = (2.0 ** torch.arange(n, device=x.device, dtype=x.dtype)) * math.pi
    ang = x[..., None] * freq                                     # (..., d, n)
    return torch.cat([ang.sin(), ang.cos()], dim=-1).flatten(-2)


def _type_embedding(control: str, dim: int, device) -> torch.Tensor:
    return _fixed("type:" + control, 1, dim, device)[0]


def _tokens(control: str, value, b: int, t: int, h: int, w: int, dim: int, device
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens ``(b, n, dim)`` and mask ``(b, n)`` of one control (attention route)."""
    if control == "text":
        from .text import default_text_encoder
        tok, mask = default_text_encoder(dim, device)(value)
    elif control == "trajectory":
        traj = _pad_objects(value.to(device).float())            # (b, K, t, 2) px
        k = traj.shape[1]
        xy = torch.stack([traj[..., 0] / max(w - 1, 1), traj[..., 1] / max(h - 1, 1)], -1)
        when = torch.linspace(0, 1, t, device=device)[None, None, :, None].expand(b, k, t, 1)
        who = torch.eye(k, device=device)[None, :, None, :].expand(b, k, t, k)
        feat = torch.cat([_fourier(torch.nan_to_num(xy)), _fourier(when), who], -1)
        tok = rearrange(feat @ _fixed("traj", feat.shape[-1], dim, device), "b k t d -> b (k t) d")
        mask = rearrange(torch.isfinite(traj).all(-1), "b k t -> b (k t)")
    elif control == "first_frame":
        image, motion = value
        img = F.adaptive_avg_pool2d(image, 16)                    # (b, 3, 16, 16)
        patches = rearrange(img, "b c (gy py) (gx px) -> b (gy gx) (c py px)", gy=4, gx=4)
        gy, gx = torch.meshgrid(torch.linspace(0, 1, 4, device=device),
                                torch.linspace(0, 1, 4, device=device), indexing="ij")
        pos = _fourier(torch.stack([gx, gy], -1).reshape(16, 2))[None].expand(b, -1, -1)
        feat = torch.cat([patches, pos], -1)
        tok = feat @ _fixed("patch", feat.shape[-1], dim, device)
        tok = torch.cat([tok, (motion @ _fixed("motion", MOTION_DIM, dim, device))[:, None]], 1)
        mask = torch.ones(b, tok.shape[1], dtype=torch.bool, device=device)
        mask[:, :16] = image.flatten(1).abs().sum(1, keepdim=True) > 0   # no image: no patches
        mask[:, 16] = motion.abs().sum(1) > 0
    else:                                                         # style, attributes: 1 token
        tok = (value @ _fixed(control, value.shape[-1], dim, device))[:, None] * 3.0
        mask = torch.ones(b, 1, dtype=torch.bool, device=device)
    return tok + _type_embedding(control, dim, device), mask


# ============================================================================ encoding
def _trajectory_maps(traj: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(b, K, t, 2)`` px -> concat maps ``(b, 3K, t, h, w)``: K heatmaps then 2K
    displacement maps (object-major). NaN positions give zero maps."""
    b, k, t, _ = traj.shape
    flat = rearrange(traj, "b k t xy -> (b k) t xy")
    sigma = trajectory_sigma(max(h, w))
    heat = rearrange(trajectory_heatmaps(flat, (h, w), sigma), "(b k) t h w -> b k t h w", b=b)
    disp = rearrange(displacement_maps(flat, (h, w), sigma), "(b k c) t h w -> b (k c) t h w",
                     b=b, k=k)
    return torch.cat([heat, disp], dim=1)


def _pad_objects(traj: torch.Tensor) -> torch.Tensor:
    """``(b, k, t, 2)`` with k <= MAX_OBJECTS -> ``(b, MAX_OBJECTS, t, 2)`` (NaN padding)."""
    b, k, t, _ = traj.shape
    if k > MAX_OBJECTS:
        raise ValueError(f"trajectory: at most {MAX_OBJECTS} objects can be controlled (the "
                         f"maps have {TRAJ_CHANNELS} channels), got {k}")
    if k < MAX_OBJECTS:
        pad = torch.full((b, MAX_OBJECTS - k, t, 2), float("nan"), device=traj.device)
        traj = torch.cat([traj, pad], dim=1)
    return traj


def encode_values(values: dict, conditions, b: int, frames: int, size, device="cpu",
                  keep: dict | None = None, route: str = "input", text_dim: int = TEXT_DIM,
                  camera_warp: bool = True) -> tuple[dict, Layout]:
    """Controls in *batch form* -> ``(cond, layout)``.

    values: ``{control: value}`` for the controls present (a control of ``conditions``
    missing here is dropped for every sample). Batch forms: ``label (b,)`` long; ``text``
    list of b captions; ``trajectory (b, k<=2, t, 2)`` px (NaN = absent);
    ``first_frame`` = ``(image (b, 3, h, w), motion (b, 6))``; ``style (b, STYLE_DIM)``;
    ``attributes (b, attribute_dim())``. keep: ``{control: (b,) bool}`` per-control keep
    bits (default all True). camera_warp: the first frame's repeated maps follow its
    requested camera motion (see :func:`~viddiff_mini.control.animate.first_frame_maps`;
    training passes False, the layout the shipped first-frame recipes learned from).
    Returns the model's cond dict and the layout (with the token range of each context
    control in ``layout.tokens``).
    """
    lay = make_layout(conditions, route, text_dim)
    h, w = (size, size) if isinstance(size, int) else size
    t = frames
    device = torch.device(device)
    unknown = sorted(set(values) - set(lay.conditions))
    if unknown:
        raise ValueError(f"values: control(s) {unknown} are not among the model's conditions "
                         f"{lay.conditions}")
    bits = {}
    for c in lay.conditions:
        k = torch.ones(b, dtype=torch.bool) if keep is None or c not in keep else \
            torch.as_tensor(keep[c], dtype=torch.bool).reshape(-1).cpu()
        if k.shape != (b,):
            raise ValueError(f"keep[{c!r}]: expected shape ({b},), got {tuple(k.shape)}")
        if c not in values:
            k = torch.zeros(b, dtype=torch.bool)
        bits[c] = k.to(device)
    cond: dict = {}
    if lay.label:
        if "label" in values:
            cond["label"] = torch.as_tensor(values["label"], device=device).long().reshape(b)
        else:
            cond["label"] = torch.zeros(b, dtype=torch.long, device=device)
        cond["label_keep"] = bits["label"]

    def masked(c, x):     # zero the samples where control c is dropped
        return x * bits[c].view(-1, *([1] * (x.ndim - 1))).to(x.dtype)

    if lay.concat:
        maps = torch.zeros(b, lay.concat_channels, t, h, w, device=device)
        for c, sl in lay.concat.items():
            if c not in values:
                continue
            if c == "trajectory":
                m = _trajectory_maps(_pad_objects(values[c].to(device).float()), h, w)
            else:
                image, motion = values[c][0].to(device).float(), values[c][1].to(device).float()
                camera = None
                if camera_warp:   # (dx, dy, present) of the camera part; unspecified = still
                    camera = motion[:, 0:2] * MOTION_SCALE * (motion[:, 2:3] > 0.5)
                m = first_frame_maps(image, t, camera=camera)
            maps[:, sl] = masked(c, m)
        cond["concat"] = maps
        cond["concat_keep"] = torch.stack([bits[c] for c in lay.concat]).any(0)
    if lay.vector:
        vec = torch.zeros(b, lay.vector_dim, device=device)
        for c, sl in lay.vector.items():
            if c not in values:
                continue
            v = values[c][1] if c == "first_frame" else values[c]
            vec[:, sl] = masked(c, v.to(device).float())
        cond["vector"] = vec
        cond["vector_keep"] = torch.stack([bits[c] for c in lay.vector]).any(0)
    if lay.context:
        toks, masks, start = [], [], 0
        for c in lay.context:
            if c in values:
                tok, mask = _tokens(c, values[c], b, t, h, w, text_dim, device)
            else:                                      # absent for all: one masked token
                tok = torch.zeros(b, 1, text_dim, device=device)
                mask = torch.zeros(b, 1, dtype=torch.bool, device=device)
            mask = mask & bits[c][:, None]
            lay.tokens[c] = slice(start, start + tok.shape[1])
            start += tok.shape[1]
            toks.append(tok * mask[..., None])
            masks.append(mask)
        cond["context"] = torch.cat(toks, 1)
        cond["context_mask"] = torch.cat(masks, 1)
        cond["context_keep"] = torch.stack([bits[c] for c in lay.context]).any(0)
    return cond, lay


def _drop_parts(x: torch.Tensor, groups: list[tuple[int, int]], p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """Zero whole ``[start, stop)`` groups of the last dim of ``x (b, d)`` with prob p each
    (training: teaches the model partial requests, e.g. speed without colour)."""
    if p <= 0:
        return x
    x = x.clone()
    for a, z in groups:
        drop = torch.rand(x.shape[0], generator=generator) < p
        x[drop.to(x.device), a:z] = 0
    return x


def _attribute_groups() -> list[tuple[int, int]]:
    from .attributes import ATTRIBUTE_SPEC, _width
    out, i = [], 0
    for spec in ATTRIBUTE_SPEC.values():
        n = _width(spec) + 1
        out.append((i, i + n))
        i += n
    return out


def build_cond(conditions, batch: dict, device="cpu", drop_p: float = 0.0,
               generator: torch.Generator | None = None, route: str = "input",
               rank: int = 0, world: int = 1, return_layout: bool = False,
               camera_warp: bool = True):
    """Training conditions from a ground-truth batch (``render_batch(..., truth=True)``).

    Every control of ``conditions`` is read from the batch's ground truth: label; text =
    the caption; trajectory = the objects' true paths; first_frame = frame 0 of the clip
    plus its true camera / object motion; style = the clip's style code; attributes = its
    measured speed, size, colour, direction, brightness. Each control is dropped per sample
    with probability ``drop_p`` (keep bits drawn from ``generator`` in canonical control
    order, for the global batch of ``world`` ranks and striped ``[rank::world]`` like the
    clips); when ``drop_p > 0`` single attributes and the two motion parts are also left out
    with probability 0.3 each, so the model learns partial requests. Returns the cond dict
    (and its :class:`Layout`, needed by :class:`ControlGuidance`, with ``return_layout``).
    camera_warp: as in :func:`encode_values` (sampling from ground truth: True; the
    trainer passes False).
    """
    conditions = check_conditions(conditions)
    if not (0.0 <= float(drop_p) <= 1.0):
        raise ValueError(f"drop_p: expected a probability in [0, 1], got {drop_p}")
    video = batch.get("video")
    if not isinstance(video, torch.Tensor) or video.ndim != 5:
        raise ValueError("batch['video']: expected a (b, 3, t, h, w) tensor")
    b, _, t, h, w = video.shape

    def need(key, control):
        if key not in batch:
            raise ValueError(f"condition {control!r} needs batch[{key!r}] (ground truth from "
                             f"render_batch(..., truth=True)); this batch has "
                             f"{sorted(batch)}")
        return batch[key]

    values: dict = {}
    for c in conditions:
        if c == "label":
            values[c] = need("label", c)
        elif c == "text":
            values[c] = list(need("caption", c))
        elif c == "trajectory":
            values[c] = need("trajectories", c).float()
        elif c == "first_frame":
            from .animate import motion_from_truth
            image = video[:, :, 0]
            if "camera" in batch and "trajectories" in batch:
                cam, obj = motion_from_truth(batch)
                motion = torch.stack([
                    encode_motion(cam[i].cpu(), obj[i].cpu() if torch.isfinite(obj[i]).all()
                                  else None) for i in range(b)])
                motion = _drop_parts(motion, [(0, 3), (3, 6)], PART_DROP if drop_p > 0 else 0,
                                     generator)
            else:
                motion = torch.zeros(b, MOTION_DIM)
            values[c] = (image, motion)
        elif c == "style":
            code = style_code(video.float(), batch.get("masks"))
            values[c] = torch.cat([code, torch.ones(b, 1, device=code.device)], 1)
        elif c == "attributes":
            from .attributes import attributes_from_truth
            need("trajectories", c)
            need("masks", c)
            vec = torch.stack([encode_attributes(a) for a in attributes_from_truth(batch)])
            values[c] = _drop_parts(vec, _attribute_groups(), PART_DROP if drop_p > 0 else 0,
                                    generator)
    keep = None
    if drop_p > 0:
        keep = {}
        for c in conditions:   # canonical order: a seed gives the same masks
            u = torch.rand(b * world, generator=generator)
            keep[c] = (u >= drop_p)[rank::world]
    cond, lay = encode_values(values, conditions, b, t, (h, w), device, keep, route,
                              camera_warp=camera_warp)
    return (cond, lay) if return_layout else cond


def truth_batch_for_labels(labels, frames: int, size: int, fold: int = 1, seed: int = 0,
                           device="cpu", split: str = "test") -> dict:
    """A truth batch (``render_batch(..., truth=True)``) with one clip per entry of
    ``labels (n,)``: the i-th clip of each class in the ``split`` of ``fold`` (the same
    clips every time), so samples of a control model can be compared with the real clip
    whose controls they were given."""
    from viddiff_mini.data.synthetic import clip_index_table, render_batch, split_indices

    table = clip_index_table()
    by_class: dict[int, list[int]] = {}
    for i in split_indices(split, fold):
        by_class.setdefault(table[i][0], []).append(i)
    seen: dict[int, int] = {}
    idx = []
    for y in torch.as_tensor(labels).reshape(-1).tolist():
        pool = by_class.get(int(y))
        if not pool:
            raise ValueError(f"labels: no {split} clip of class {y} in fold {fold}")
        idx.append(pool[seen.get(y, 0) % len(pool)])
        seen[y] = seen.get(y, 0) + 1
    return render_batch(idx, frames=frames, size=size, seed=seed, device=device, truth=True)


def truth_cond_for_labels(cfg, labels, device="cpu") -> dict:
    """The cond dict of a model trained with ``cfg.conditions`` for test clips of
    ``labels`` (all controls kept, read from their ground truth): what ``train`` uses to
    draw its sample grid for a control model. ``labels`` are the run's labels
    (0..num_classes-1, which a run over ``cfg.classes`` maps to data-set classes)."""
    batch = truth_batch_for_run_labels(cfg, labels, device)
    return build_cond(cfg.conditions, batch, device, drop_p=0.0)


def truth_batch_for_run_labels(cfg, labels, device="cpu") -> dict:
    """:func:`truth_batch_for_labels` for the run's labels ``(n,)``: clips of the data-set
    classes ``cfg.class_ids()[labels]``, with ``batch["label"]`` set back to the run labels
    (what the model's label embedding was trained on)."""
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    ids = torch.as_tensor(cfg.class_ids())[labels]
    batch = truth_batch_for_labels(ids, cfg.frames, cfg.size, cfg.fold, cfg.seed, device)
    batch["label"] = labels.to(batch["label"].device)
    return batch


# ============================================================================ user requests
def _batched(x, b: int | None, ndim: int, name: str, shape_hint: str) -> torch.Tensor:
    """Add a batch axis to a single item (``ndim - 1`` dims) and broadcast it to b."""
    x = torch.as_tensor(x, dtype=torch.float32) if not isinstance(x, torch.Tensor) else x
    if x.ndim == ndim - 1:
        x = x[None]
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected {shape_hint}, got shape {tuple(x.shape)}")
    if b is not None and x.shape[0] == 1 and b > 1:
        x = x.expand(b, *x.shape[1:])
    return x


def spec_to_values(spec: dict, conditions, frames: int, size, batch_size: int | None = None,
                   out_of_frame: str = "error", max_speed: float | None = None
                   ) -> tuple[dict, int, list[str], TrajectoryReport | None]:
    """A user request -> ``(values in batch form, b, notes, trajectory report)``.

    spec keys (any subset; each must be a control the model was trained with):

    * ``label``: int or ``(b,)``; ``text``: str or list of b str (empty -> ValueError);
    * ``trajectory``: ``(t, 2)``, ``(k, t, 2)`` or ``(b, k, t, 2)`` px at the clip size,
      checked by :func:`~.trajectory.check_trajectories` (``out_of_frame`` "error" or
      "clamp"; ``max_speed`` makes faster requests a ValueError);
    * ``first_frame``: image ``(3, h, w)`` / ``(b, 3, h, w)`` in [-1, 1]; ``motion``:
      ``{"camera": (dx, dy) | None, "object": (dx, dy) | None}`` px/frame (with first_frame);
    * ``reference``: a video ``(3, t', h, w)`` / ``(b, 3, t', h, w)``: its frame 0 becomes
      ``first_frame`` and its style code ``style`` (for whichever of the two the model has
      and the spec does not give explicitly);
    * ``style``: a style code ``(STYLE_DIM,)`` / ``(b, STYLE_DIM)`` or a video (its code);
    * ``attributes``: a dict or a list of b dicts (see :mod:`.attributes`).
    """
    lay = make_layout(conditions)
    spec = dict(spec or {})
    known = set(CONDITIONS) | {"reference", "motion"}
    bad = sorted(set(spec) - known)
    if bad:
        raise ValueError(f"spec: unknown key(s) {bad}; expected any of {sorted(known)}")
    notes: list[str] = []
    h, w = (size, size) if isinstance(size, int) else size
    ref = spec.pop("reference", None)
    if ref is not None:
        ref = _batched(ref, None, 5, "reference", "a video (3, t, h, w) or (b, 3, t, h, w)")
        used = []
        if "first_frame" in lay.conditions and "first_frame" not in spec:
            spec["first_frame"] = ref[:, :, 0]
            used.append("first_frame")
        if "style" in lay.conditions and "style" not in spec:
            spec["style"] = ref
            used.append("style")
        if not used:
            raise ValueError("reference: a reference video feeds the first_frame and style "
                             f"controls, but the model has neither (conditions "
                             f"{lay.conditions}) or both are given explicitly")
        notes.append(f"reference video -> {', '.join(used)}")
    motion = spec.pop("motion", None)
    if motion is not None and "first_frame" not in spec:
        spec["first_frame"] = None                       # motion alone: no image
    missing = sorted(set(spec) - set(lay.conditions))
    if missing:
        raise ValueError(f"spec: control(s) {missing} were not among the model's training "
                         f"conditions {lay.conditions}; train with --conditions including them "
                         f"or leave them out")
    # batch size: from the request itself (items with a batch axis), else batch_size, else 1
    sizes = {}
    for k, v in spec.items():
        if isinstance(v, (list, tuple)) and k in ("text", "attributes"):
            sizes[k] = len(v)
        elif k == "label" and not isinstance(v, int):
            sizes[k] = torch.as_tensor(v).reshape(-1).shape[0]
        elif isinstance(v, torch.Tensor) and (
                (k in ("trajectory", "first_frame") and v.ndim == 4)
                or (k == "style" and v.ndim in (2, 5))):
            sizes[k] = v.shape[0]
    distinct = {n for n in sizes.values() if n != 1}
    if batch_size is not None:
        distinct.add(batch_size)
    if len(distinct) > 1:
        raise ValueError(f"spec: the batch sizes disagree: {sizes}"
                         + (f", batch_size={batch_size}" if batch_size is not None else ""))
    b = distinct.pop() if distinct else 1

    values: dict = {}
    report = None
    for c, v in spec.items():
        if c == "label":
            lab = torch.as_tensor(v, dtype=torch.long).reshape(-1)
            values[c] = lab.expand(b) if lab.numel() == 1 else lab
        elif c == "text":
            from .text import tokenize
            caps = [v] * b if isinstance(v, str) else list(v)
            tokenize(caps)                               # empty caption -> clear ValueError
            values[c] = caps
        elif c == "trajectory":
            x = torch.as_tensor(v, dtype=torch.float32)
            if x.ndim == 2:
                x = x[None]
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[-1] != 2:
                raise ValueError(f"trajectory: expected (t, 2), (k, t, 2) or (b, k, t, 2) "
                                 f"pixel positions, got shape {tuple(x.shape)}")
            if x.shape[2] != frames:
                raise ValueError(f"trajectory: has {x.shape[2]} frames but the clip has "
                                 f"{frames}; resample it (e.g. bezier(points, frames={frames}))")
            checked = []
            for i in range(x.shape[0]):
                xi, rep = check_trajectories(x[i], (h, w), max_speed=max_speed,
                                             out_of_frame=out_of_frame)
                rep.raise_if_infeasible()
                report = rep if report is None else report
                if rep.clamped:
                    notes.append(f"trajectory[{i}]: {rep.issues[0]}")
                checked.append(xi)
            x = torch.stack(checked)
            values[c] = x.expand(b, -1, -1, -1) if x.shape[0] == 1 else x
        elif c == "first_frame":
            if v is None:
                image = torch.zeros(b, 3, h, w)
            else:
                image = check_image(_batched(v, b, 4, "first_frame", "an image (3, h, w) or "
                                             "(b, 3, h, w)"), "first_frame", (h, w))
                image = image.expand(b, -1, -1, -1) if image.shape[0] == 1 else image
            m = motion or {}
            unknown = sorted(set(m) - {"camera", "object"})
            if unknown:
                raise ValueError(f"motion: unknown key(s) {unknown}; expected 'camera' and/or "
                                 f"'object' with (dx, dy) px/frame or None")
            code = encode_motion(m.get("camera"), m.get("object"))
            values[c] = (image.float(), code[None].expand(b, -1))
        elif c == "style":
            x = v if isinstance(v, torch.Tensor) else torch.as_tensor(v, dtype=torch.float32)
            if x.ndim in (4, 5) and x.shape[-4] == 3:     # a clip: measure its style
                x = style_code(_batched(x, None, 5, "style", "a video (b, 3, t, h, w)").float())
            x = _batched(x, b, 2, "style", f"a style code ({STYLE_DIM},) / (b, {STYLE_DIM}) "
                                           f"or a reference video")
            if x.shape[1] != STYLE_DIM:
                raise ValueError(f"style: expected a style code with {STYLE_DIM} values, got "
                                 f"shape {tuple(x.shape)}")
            values[c] = torch.cat([x.float(), torch.ones(x.shape[0], 1)], 1)
        elif c == "attributes":
            items = [v] * b if isinstance(v, dict) else list(v)
            if len(items) != b:
                raise ValueError(f"attributes: expected one dict or {b} dicts, got {len(items)}")
            values[c] = torch.stack([encode_attributes(a) for a in items])
    for c, v in values.items():
        n = len(v) if isinstance(v, list) else (v[0].shape[0] if isinstance(v, tuple)
                                                 else v.shape[0])
        if n != b:
            raise ValueError(f"{c}: holds {n} samples but the batch has {b}")
    return values, b, notes, report


def cond_for_spec(spec: dict, conditions, frames: int, size, batch_size: int | None = None,
                  device="cpu", route: str = "input", out_of_frame: str = "error",
                  max_speed: float | None = None, camera_warp: bool = True) -> dict:
    """The model's cond dict for a user request ``spec`` (see :func:`spec_to_values`).

    Controls of ``conditions`` that the spec leaves out are dropped (the model's null
    inputs), so any subset works with a model trained with condition dropout.
    camera_warp: as in :func:`encode_values`.
    """
    values, b, _, _ = spec_to_values(spec, conditions, frames, size, batch_size,
                                     out_of_frame, max_speed)
    return encode_values(values, conditions, b, frames, size, device, None, route,
                         camera_warp=camera_warp)[0]


def drop_controls(cond: dict, layout: Layout, names) -> dict:
    """A copy of ``cond`` with the controls ``names`` dropped for every sample.

    Dropped controls are zeroed in shared inputs (concat maps, vector slice) or masked out
    of the context; an input whose controls are all dropped gets ``<input>_keep`` False.
    """
    names = set(names)
    bad = sorted(names - set(layout.conditions))
    if bad:
        raise ValueError(f"names: control(s) {bad} are not in the layout {layout.conditions}")
    out = dict(cond)
    for inp, parts in (("concat", layout.concat), ("vector", layout.vector)):
        if inp not in cond or not (names & set(parts)):
            continue
        x = cond[inp].clone()
        for c in names & set(parts):
            x[:, parts[c]] = 0
        out[inp] = x
        if set(parts) <= names:
            out[inp + "_keep"] = torch.zeros_like(cond[inp + "_keep"])
    if "context" in cond and names & set(layout.context):
        m = cond["context_mask"].clone()
        for c in names & set(layout.context):
            m[:, layout.tokens[c]] = False
        out["context_mask"] = m
        if set(layout.context) <= names:
            out["context_keep"] = torch.zeros_like(cond["context_keep"])
    if "label" in names and "label_keep" in cond:
        out["label_keep"] = torch.zeros_like(cond["label_keep"])
    return out


# ============================================================================ guidance
class ControlGuidance(nn.Module):
    """Per-control classifier-free guidance around a model: pass it to ``Diffusion.sample``
    in place of the model (with ``guidance=None``).

    guidance: a float ``w`` (joint: ``f(null) + w (f(all) - f(null))``) or ``{control: w_k}``
    (fusion by a weighted sum of guidance terms: ``f(null) + sum_k w_k (f(only k) -
    f(null))``; a control not named gets no term, i.e. it is dropped from every pass). All
    passes run as one batched forward. ``forward(x_t, t, cond)`` with the cond built for
    ``layout`` (by :func:`encode_values` / :func:`compose`).

    motion_guidance: a separate scale ``w_m`` for the first frame's motion request, nested
    inside the image's term as InstructPix2Pix nests its instruction inside the image:
    the terms above use the request *unspecified* (its vector slice zeroed, what the model
    learned from the part dropout) and one more term adds ``w_m (f(with motion) -
    f(motion unspecified))``. Why: a model that reads the motion off the image answers a
    request against it weakly; a larger ``w_m`` amplifies only the request's effect, not
    the image's. Measured on msh-first-frame-base (32 Move images, guidance 2, ``w_m`` = 8): an
    object motion asked against the image is followed better (0.83 -> 0.42 px/frame off),
    but a camera request then leaves more object motion (0.23 -> 0.38), and the fraction
    of requests followed in both parts stays 64.8% -- a trade, so it is not a default (the
    fix was in the data: ``--virtual-moves``, msh-first-frame).
    """

    def __init__(self, model, layout: Layout, guidance, motion_guidance: float | None = None):
        super().__init__()
        self.model, self.layout = model, layout
        if motion_guidance is not None and "first_frame" not in layout.vector:
            raise ValueError(f"motion_guidance: needs a first_frame control (with its motion "
                             f"vector); the layout has {layout.conditions}")
        self.motion_guidance = None if motion_guidance is None else float(motion_guidance)
        if isinstance(guidance, dict):
            bad = sorted(set(guidance) - set(layout.conditions))
            if bad:
                raise ValueError(f"guidance: control(s) {bad} are not among the conditions "
                                 f"{layout.conditions}")
            self.guidance = {k: float(v) for k, v in guidance.items()}
        elif isinstance(guidance, (int, float)) and not isinstance(guidance, bool):
            self.guidance = float(guidance)
        else:
            raise TypeError(f"guidance: expected a float or {{control: scale}}, got "
                            f"{type(guidance).__name__}")

    def _unspecified(self, cond: dict) -> dict:
        """``cond`` with the first frame's motion request unspecified (flags and values 0)."""
        out = dict(cond)
        out["vector"] = cond["vector"].clone()
        out["vector"][:, self.layout.vector["first_frame"]] = 0
        return out

    def variants(self, cond: dict) -> tuple[list[dict], list[float]]:
        """The condition dicts of each pass and their weights (the first is null)."""
        all_names = self.layout.conditions
        null = drop_controls(cond, self.layout, all_names)
        wm = self.motion_guidance
        base = cond if wm is None else self._unspecified(cond)
        if isinstance(self.guidance, float):
            conds, weights = [null, base], [1.0 - self.guidance, self.guidance]
            if wm is not None:
                conds, weights = conds + [cond], [weights[0], weights[1] - wm, wm]
            return conds, weights
        terms = [(k, w) for k, w in self.guidance.items() if w != 0.0]
        conds = [null] + [drop_controls(base, self.layout, [c for c in all_names if c != k])
                          for k, _ in terms]
        weights = [1.0 - sum(w for _, w in terms)] + [w for _, w in terms]
        if wm is not None:   # the motion term beside the first frame's own term
            only_ff = drop_controls(cond, self.layout, [c for c in all_names if c != "first_frame"])
            conds += [only_ff, self._unspecified(only_ff)]
            weights += [wm, -wm]
        return conds, weights

    def forward(self, x: torch.Tensor, t, cond: dict | None = None) -> torch.Tensor:
        if not cond:
            raise ValueError("cond: ControlGuidance needs the cond dict of the request")
        conds, weights = self.variants(cond)
        n, b = len(conds), x.shape[0]
        batched = {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(b)
        pred = self.model(torch.cat([x] * n), torch.cat([t] * n), batched)
        return sum(w * p for w, p in zip(weights, pred.chunk(n)))


# ============================================================================ conflicts
@dataclass
class Conflict:
    """Two controls that ask for incompatible things. ``hard``: both pin pixels, so it
    cannot be settled by weighting (only by an error or a reported adjustment)."""

    a: str
    b: str
    kind: str
    detail: str
    hard: bool = False
    data: dict = field(default_factory=dict)

    def loser(self, priority=PRIORITY) -> str:
        return self.a if priority.index(self.a) > priority.index(self.b) else self.b

    def __str__(self) -> str:
        return f"{self.a} vs {self.b} ({self.kind}{', hard' if self.hard else ''}): {self.detail}"


@dataclass
class ConflictReport:
    """What :func:`detect_conflicts` found and :func:`resolve_conflicts` did."""

    conflicts: list[Conflict] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.conflicts

    def __str__(self) -> str:
        lines = [f"ConflictReport: {len(self.conflicts)} conflict(s)"]
        lines += [f"  ! {c}" for c in self.conflicts]
        lines += [f"  -> {a}" for a in self.actions]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


_DIR_WORDS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "upward": (0, -1),
              "upwards": (0, -1), "down": (0, 1), "downward": (0, 1), "downwards": (0, 1),
              "falls": (0, 1), "drops": (0, 1), "rises": (0, -1)}


def _caption_directions(caption: str) -> list[tuple[str, tuple[int, int]]]:
    from .text import split_words
    return [(w, _DIR_WORDS[w]) for w in split_words(caption) if w in _DIR_WORDS]


def _first(v):
    return v[0] if isinstance(v, (list, tuple)) else v


def _traj0(traj) -> torch.Tensor | None:
    """Object 0's path ``(t, 2)`` of the first sample of a trajectory request."""
    x = torch.as_tensor(traj, dtype=torch.float32)
    while x.ndim > 2:
        x = x[0]
    return x if x.ndim == 2 and x.shape[-1] == 2 else None


def _locate_color(image: torch.Tensor, colour: str) -> tuple[float, float] | None:
    """Centroid (x, y) of the pixels of a named colour in an image ``(3, h, w)``."""
    from .text import COLORS
    from .trajectory import foreground_map
    fg = foreground_map(image[:, None][None], color=COLORS[colour])[0, 0]     # (h, w)
    m = fg > 0.5
    if m.sum() < 2:
        return None
    yy, xx = torch.nonzero(m, as_tuple=True)
    return float(xx.float().mean()), float(yy.float().mean())


def detect_conflicts(spec: dict, size=None, tol: float | None = None) -> ConflictReport:
    """Find controls of a request ``spec`` (the :func:`spec_to_values` keys) that disagree.

    Checked on the first sample of the request:

    * text vs trajectory: a direction word ("left", "falls", ...) against object 0's net
      displacement -- opposite (projection < ``-tol`` px) is a conflict;
    * text vs attributes: the caption's colour word vs ``attributes["colour"]``;
    * attributes vs trajectory: direction more than 60 degrees apart, or speed off by more
      than 50 %;
    * first_frame vs trajectory (hard): the object with the requested colour (from text or
      attributes) is more than ``tol`` px from where the trajectory starts.

    tol: px, default ``max(2, size / 8)`` (or 4 without ``size``).
    """
    from .text import parse_caption

    rep = ConflictReport()
    size = size if size is None or isinstance(size, int) else max(size)
    tol = tol if tol is not None else (max(2.0, size / 8) if size else 4.0)
    caption = _first(spec.get("text")) if spec.get("text") is not None else None
    traj = _traj0(spec["trajectory"]) if spec.get("trajectory") is not None else None
    attrs = _first(spec.get("attributes")) if spec.get("attributes") is not None else None
    colour = None
    if caption is not None:
        cols = parse_caption(caption)["colors"]
        colour = cols[0] if cols else None
    if traj is not None and traj.shape[0] >= 2:
        ok = torch.isfinite(traj).all(-1)
        pts = traj[ok]
        disp = pts[-1] - pts[0] if len(pts) >= 2 else torch.zeros(2)
        if caption is not None:
            for word, d in _caption_directions(caption):
                proj = float((disp * torch.tensor(d, dtype=torch.float32)).sum())
                if proj < -tol:
                    rep.conflicts.append(Conflict(
                        "text", "trajectory", "direction",
                        f"caption says {word!r} but the trajectory moves "
                        f"({float(disp[0]):+.1f}, {float(disp[1]):+.1f}) px"))
                    break
        if attrs is not None and len(pts) >= 2:
            if attrs.get("direction") is not None and float(disp.norm()) > tol:
                ang = math.degrees(math.atan2(float(disp[1]), float(disp[0]))) % 360
                diff = abs(ang - float(attrs["direction"])) % 360
                diff = min(diff, 360 - diff)
                if diff > 60:
                    rep.conflicts.append(Conflict(
                        "attributes", "trajectory", "direction",
                        f"attribute direction {float(attrs['direction']):.0f} deg but the "
                        f"trajectory heads {ang:.0f} deg"))
            if attrs.get("speed") is not None:
                speed = float((pts[1:] - pts[:-1]).norm(dim=-1).mean())
                want = float(attrs["speed"])
                if abs(speed - want) > 0.5 * max(want, speed, 1e-6) and abs(speed - want) > 0.5:
                    rep.conflicts.append(Conflict(
                        "attributes", "trajectory", "speed",
                        f"attribute speed {want:.2f} px/frame but the trajectory moves "
                        f"{speed:.2f} px/frame"))
    if attrs is not None and attrs.get("colour") is not None:
        if colour is not None and attrs["colour"] != colour:
            rep.conflicts.append(Conflict("text", "attributes", "colour",
                                          f"caption says {colour!r}, attributes say "
                                          f"{attrs['colour']!r}"))
        colour = colour or attrs["colour"]
    image = spec.get("first_frame")
    if image is None and spec.get("reference") is not None:
        ref = torch.as_tensor(spec["reference"])
        image = ref[:, 0] if ref.ndim == 4 else ref[0, :, 0]
    if image is not None and traj is not None and colour in ATTRIBUTE_COLORS:
        img = torch.as_tensor(image, dtype=torch.float32)
        img = img[0] if img.ndim == 4 else img
        at = _locate_color(img, colour)
        start = traj[0]
        if at is None:
            rep.notes.append(f"first_frame: no {colour} object found; start not checked")
        elif torch.isfinite(start).all():
            dist = math.dist(at, (float(start[0]), float(start[1])))
            if dist > tol:
                rep.conflicts.append(Conflict(
                    "first_frame", "trajectory", "start", f"the {colour} object is at "
                    f"({at[0]:.1f}, {at[1]:.1f}) in the first frame but the trajectory starts "
                    f"at ({float(start[0]):.1f}, {float(start[1]):.1f}), {dist:.1f} px away",
                    hard=True, data={"at": at}))
    return rep


def resolve_conflicts(spec: dict, guidance=None, policy: str = "priority",
                      down_weight: float = 0.25, size=None, tol: float | None = None,
                      priority=PRIORITY) -> tuple[dict, object, ConflictReport]:
    """Detect conflicts in ``spec`` and resolve them by ``policy``.

    * ``"priority"``: the lower control of each conflict (:data:`PRIORITY`) is removed from
      the request (and from ``guidance``);
    * ``"weights"``: its guidance weight is multiplied by ``down_weight`` (a float guidance
      becomes a per-control dict first; no guidance -> scale 1 for every control);
    * ``"error"``: raise ValueError listing every conflict.

    A hard conflict (first frame vs trajectory start) raises under ``"error"``; otherwise
    the trajectory is translated so that it starts at the object found in the first frame
    (a documented adjustment, reported in ``actions``). Returns ``(spec, guidance, report)``.
    """
    policies = ("priority", "weights", "error")
    if policy not in policies:
        raise ValueError(f"policy: expected one of {policies}, got {policy!r}")
    spec = dict(spec)
    rep = detect_conflicts(spec, size, tol)
    if not rep.conflicts:
        return spec, guidance, rep
    if policy == "error":
        raise ValueError("conflicting controls: " + "; ".join(str(c) for c in rep.conflicts))
    present = [c for c in CONDITIONS if spec.get(c) is not None]
    if policy == "weights" and not isinstance(guidance, dict):
        base = 1.0 if guidance is None else float(guidance)
        guidance = {c: base for c in present}
    elif isinstance(guidance, dict):
        guidance = dict(guidance)
    for con in rep.conflicts:
        if con.hard:
            traj = torch.as_tensor(spec["trajectory"], dtype=torch.float32)
            shift = torch.tensor(con.data["at"]) - _traj0(traj)[0]
            spec["trajectory"] = traj + shift
            rep.actions.append(f"hard conflict {con.a} vs {con.b}: trajectory translated by "
                               f"({float(shift[0]):+.1f}, {float(shift[1]):+.1f}) px to start "
                               f"at the first-frame object")
            continue
        loser = con.loser(priority)
        if policy == "priority":
            if loser in spec and loser not in rep.dropped:
                spec.pop(loser)
                rep.dropped.append(loser)
                rep.actions.append(f"{con.kind} conflict {con.a} vs {con.b}: dropped {loser!r} "
                                   f"(lower priority)")
            if isinstance(guidance, dict):
                guidance.pop(loser, None)
        else:
            guidance[loser] = guidance.get(loser, 1.0) * down_weight
            rep.actions.append(f"{con.kind} conflict {con.a} vs {con.b}: guidance weight of "
                               f"{loser!r} x{down_weight} -> {guidance[loser]:.3g}")
    return spec, guidance, rep


# ============================================================================ one call
@dataclass
class ComposedControl:
    """A resolved request: the cond dict, its layout, the guidance to use and the report."""

    cond: dict
    layout: Layout
    guidance: object
    report: ConflictReport
    batch_size: int
    frames: int
    size: tuple[int, int]
    trajectory_report: TrajectoryReport | None = None
    motion_guidance: float | None = None

    def guided(self, model):
        """The model to sample with: wrapped in :class:`ControlGuidance` when guidance is
        set (and not the plain conditional model, scale 1) or motion guidance is."""
        g, wm = self.guidance, self.motion_guidance
        plain = g is None or (not isinstance(g, dict) and float(g) == 1.0)
        if plain and wm is None:
            return model
        if isinstance(g, dict):
            g = {k: v for k, v in g.items() if k in self.layout.conditions}
        return ControlGuidance(model, self.layout, 1.0 if g is None else g, wm)

    def sample(self, model, diffusion, steps: int = 50, sampler: str = "ddim",
               generator: torch.Generator | None = None, x0_hook=None, device=None,
               grad: bool = False, progress: bool = False,
               autoencoder=None) -> torch.Tensor:
        """Sample ``(b, 3, t, h, w)`` clips for this request.

        autoencoder: a latent model's autoencoder (``latent.load_latent(cfg)``; None for a
        pixel model): latents are sampled (x0 not clamped to [-1, 1]) and decoded, and a
        pixel ``x0_hook`` runs through :func:`~viddiff_mini.latent.pixel_hook`.
        """
        from viddiff_mini.latent import sample_clips

        h, w = self.size
        return sample_clips(self.guided(model), diffusion, (self.batch_size, 3, self.frames, h, w),
                            autoencoder, x0_hook, cond=self.cond, sampler=sampler, steps=steps,
                            generator=generator, device=device, grad=grad, progress=progress)


def compose(spec: dict, conditions, frames: int, size, batch_size: int | None = None,
            guidance=None, policy: str = "priority", route: str = "input", device="cpu",
            out_of_frame: str = "error", max_speed: float | None = None,
            down_weight: float = 0.25, camera_warp: bool = True,
            motion_guidance: float | None = None) -> ComposedControl:
    """One interface for any combination of controls: check, resolve conflicts, encode.

    spec: the request (:func:`spec_to_values`); conditions: what the model was trained
    with; guidance: None, a float or ``{control: scale}``; policy: conflict resolution
    (:func:`resolve_conflicts`); camera_warp: the first frame's maps follow the requested
    camera motion (:func:`encode_values`); motion_guidance: the motion request's own scale
    (:class:`ControlGuidance`). Returns a :class:`ComposedControl` whose
    ``.sample(model, diffusion)`` generates the clips and whose ``.report`` says what was
    found and done.
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    spec, guidance, rep = resolve_conflicts(spec, guidance, policy, down_weight, hw)
    values, b, notes, traj_rep = spec_to_values(spec, conditions, frames, hw, batch_size,
                                                out_of_frame, max_speed)
    rep.notes += notes
    cond, lay = encode_values(values, conditions, b, frames, hw, device, None, route,
                              camera_warp=camera_warp)
    return ComposedControl(cond, lay, guidance, rep, b, frames, hw, traj_rep, motion_guidance)
