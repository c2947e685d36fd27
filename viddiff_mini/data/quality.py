"""A video quality filter (section 11.1.4): drop clips a generative model should not learn from.

Large video data sets (WebVid-10M, HD-VILA-100M) are scraped, and a good share of what
comes back is unusable: too short, black or blown-out frames, slide shows with no motion,
several shots glued together (a model trained on them learns to "teleport"), re-uploads of
the same clip, and files that do not even decode. A filter is a chain of cheap checks; each
stage is a small function of uint8 frames ``(t, h, w, 3)`` (float clips ``(c, t, h, w)``
in [-1, 1] are accepted too) that returns ``None`` to keep the clip or a reason string::

    too_dark(frames, min_brightness=0.08)   -> "too dark: mean brightness 0.03 < 0.08"

and :func:`filter_videos` runs the chain over a folder, a data set or clips in memory,
drops a clip at its first failing stage, and reports what was dropped and why::

    result = filter_videos("data/raw", report="filter_report.json")
    result.kept           # paths that passed
    result.report         # counts per stage + every dropped clip with its reason

Thresholds are arguments (``default_stages(min_motion=...)``): tune them on your data by
looking at what each stage drops (the report makes that a one-liner).
"""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from viddiff_mini.utils import atomic_write_bytes, tqdm

from .video_io import CorruptVideoError, read_video


# --------------------------------------------------------------------------- measurements
def as_frames(x) -> np.ndarray:
    """uint8 numpy (t, h, w, 3) from uint8 (t, h, w, c) or a float clip (c, t, h, w) in [-1, 1]."""
    if torch.is_tensor(x):
        if x.is_floating_point():
            from .clips import to_uint8_frames
            return to_uint8_frames(x)
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"frames: expected uint8 (t, h, w, c) or a float clip (c, t, h, w) in "
                         f"[-1, 1], got dtype {x.dtype} shape {x.shape}")
    return x if x.shape[-1] == 3 else np.repeat(x[..., :1], 3, axis=-1)


def luma(frames: np.ndarray) -> np.ndarray:
    """Brightness (Rec. 601 luma) in [0, 1]: float32 (t, h, w)."""
    f = frames.astype(np.float32) / 255.0
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def motion_score(frames: np.ndarray, pixel_delta: float = 0.04) -> float:
    """Mean fraction of pixels whose brightness changes by more than ``pixel_delta`` per frame.

    A fraction, not a mean difference: compression noise moves every pixel a little,
    real motion moves some pixels a lot. 0 for a one-frame clip.
    """
    y = luma(frames)
    if len(y) < 2:
        return 0.0
    return float((np.abs(np.diff(y, axis=0)) > pixel_delta).mean())


def _thumbnails(frames: np.ndarray, idx, size: int, grey: bool) -> np.ndarray:
    """Area-averaged size x size thumbnails of frames ``idx``: float32 (n, c, size, size) in [0, 1]."""
    if grey:
        x = torch.from_numpy(luma(frames[idx]))[:, None]
    else:
        x = torch.from_numpy(frames[idx].astype(np.float32) / 255).permute(0, 3, 1, 2)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="area").numpy()


def frame_changes(frames: np.ndarray, size: int = 16) -> np.ndarray:
    """How much the picture changes between consecutive frames: float (t-1,).

    Each frame becomes a 16x16 grey thumbnail (blurring away small moving objects and
    noise), standardised by its own mean and contrast (so a flash or fade does not count),
    and the score is the mean absolute difference of consecutive thumbnails. A shot change
    replaces the whole layout at once and scores far above motion within a shot.
    """
    t = _thumbnails(frames, np.arange(len(frames)), size, grey=True)[:, 0]
    z = (t - t.mean(axis=(1, 2), keepdims=True)) / (t.std(axis=(1, 2), keepdims=True) + 0.05)
    return np.abs(np.diff(z, axis=0)).mean(axis=(1, 2))


def fingerprint(frames: np.ndarray, n_frames: int = 4, size: int = 8) -> np.ndarray:
    """A tiny-image fingerprint of a clip: ``n_frames`` evenly spaced frames shrunk to
    ``size`` x ``size`` colour thumbnails, float32 (n_frames, 3, size, size) in [0, 1].

    Re-encoding, resizing or a small colour shift moves every cell a little; a different
    clip moves some cells a lot, which :func:`fingerprint_distance` measures. (On
    MovingShapes at 64x64, re-encodes stay below 0.025 and different clips above 0.05.)
    """
    idx = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
    return _thumbnails(frames, idx, size, grey=False)


def fingerprint_distance(a: np.ndarray, b: np.ndarray) -> float:
    """99th percentile of |a - b| over the cells of two fingerprints (0 = identical, 1 = max).

    Not the mean: two clips that share a background differ only in the few cells their
    objects cover, and the mean would hide that. Not the max: codec noise hits a few cells
    hard. The 99th percentile (the 8th largest of 768 cells) sees objects, not noise.
    """
    return float(np.quantile(np.abs(a - b), 0.99))


# --------------------------------------------------------------------------- the stages
def too_short(frames, min_frames: int = 16) -> str | None:
    """Fewer than ``min_frames`` frames (cannot give a clip without looping)."""
    n = len(as_frames(frames))
    return f"too short: {n} frames < {min_frames}" if n < min_frames else None


def too_dark(frames, min_brightness: float = 0.08) -> str | None:
    """Mean brightness (0..1) below ``min_brightness``: black or underexposed video."""
    b = float(luma(as_frames(frames)).mean())
    return f"too dark: mean brightness {b:.3f} < {min_brightness}" if b < min_brightness else None


def too_bright(frames, max_brightness: float = 0.92) -> str | None:
    """Mean brightness above ``max_brightness``: white or blown-out video."""
    b = float(luma(as_frames(frames)).mean())
    return (f"too bright: mean brightness {b:.3f} > {max_brightness}"
            if b > max_brightness else None)


def static(frames, min_motion: float = 0.0005, pixel_delta: float = 0.04) -> str | None:
    """Almost no pixel changes (a still image, a slide show's slide): nothing to learn about motion."""
    m = motion_score(as_frames(frames), pixel_delta)
    return f"static: motion {m:.5f} < {min_motion}" if m < min_motion else None


def scene_cuts(frames, threshold: float = 0.3, min_ratio: float = 2.0,
               max_cuts: int = 0) -> str | None:
    """More than ``max_cuts`` shot changes: a :func:`frame_changes` score above ``threshold``
    *and* ``min_ratio`` times the clip's median score (fast camera motion is high everywhere,
    a cut is a spike)."""
    d = frame_changes(as_frames(frames))
    if len(d) == 0:
        return None
    cuts = np.flatnonzero((d > threshold) & (d > min_ratio * (np.median(d) + 0.05)))
    if len(cuts) > max_cuts:
        where = ", ".join(str(int(c) + 1) for c in cuts[:5])
        return f"scene cut: {len(cuts)} cut(s) at frame {where} (change > {threshold})"
    return None


class NearDuplicates:
    """A stateful stage: drop a clip whose :func:`fingerprint` is within ``max_distance``
    of a clip kept earlier (the first copy is kept, later copies are dropped).

    Comparing against every kept fingerprint is O(n) per clip: fine for thousands of clips;
    millions need an index (e.g. locality-sensitive hashing of the fingerprints).
    """

    wants_name = True

    def __init__(self, max_distance: float = 0.04, n_frames: int = 4, size: int = 8):
        self.max_distance, self.n_frames, self.size = max_distance, n_frames, size
        self.prints: list[np.ndarray] = []
        self.names: list[str] = []

    def __call__(self, frames, name: str | None = None) -> str | None:
        fp = fingerprint(as_frames(frames), self.n_frames, self.size)
        if self.prints:
            diff = np.abs(np.stack(self.prints) - fp).reshape(len(self.prints), -1)
            dist = np.quantile(diff, 0.99, axis=1)          # as in fingerprint_distance
            j = int(dist.argmin())
            if dist[j] <= self.max_distance:
                return f"near-duplicate of {self.names[j]} (distance {dist[j]:.4f})"
        self.prints.append(fp)
        self.names.append(name if name is not None else f"#{len(self.names)}")
        return None


def default_stages(min_frames: int = 16, min_brightness: float = 0.08,
                   max_brightness: float = 0.92, min_motion: float = 0.0005,
                   cut_threshold: float = 0.3, max_cuts: int = 0,
                   duplicate_distance: float = 0.04) -> list[tuple[str, object]]:
    """The standard chain as ``(name, stage)`` pairs, cheapest checks first.

    Near-duplicates come last so that only clips that passed everything else are
    remembered as originals.
    """
    return [
        ("too_short", functools.partial(too_short, min_frames=min_frames)),
        ("too_dark", functools.partial(too_dark, min_brightness=min_brightness)),
        ("too_bright", functools.partial(too_bright, max_brightness=max_brightness)),
        ("static", functools.partial(static, min_motion=min_motion)),
        ("scene_cut", functools.partial(scene_cuts, threshold=cut_threshold, max_cuts=max_cuts)),
        ("near_duplicate", NearDuplicates(max_distance=duplicate_distance)),
    ]


def _thresholds(stage) -> dict:
    if isinstance(stage, functools.partial):
        return dict(stage.keywords)
    if isinstance(stage, NearDuplicates):
        return {"max_distance": stage.max_distance, "n_frames": stage.n_frames,
                "size": stage.size}
    return {}


def check(frames, stages=None, name: str | None = None) -> tuple[str, str] | None:
    """Run ``stages`` on one clip: ``None`` if it passes, else ``(stage name, reason)``."""
    frames = as_frames(frames)
    for stage_name, stage in (default_stages() if stages is None else stages):
        reason = stage(frames, name=name) if getattr(stage, "wants_name", False) else stage(frames)
        if reason:
            return stage_name, reason
    return None


# --------------------------------------------------------------------------- running it
@dataclass
class FilterResult:
    """What :func:`filter_videos` returns: kept names, dropped rows and the report dict."""

    kept: list[str] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)   # {"path", "stage", "reason"}
    report: dict = field(default_factory=dict)

    def write(self, path) -> Path:
        """Write the report as JSON (``.json``) or CSV (``.csv``: path,status,stage,reason)."""
        return write_report(self.report, path)


def _items(source, max_frames):
    """Yield (name, loader) pairs; loader() returns uint8 frames or raises CorruptVideoError."""
    from .clips import ClipDataset
    from .folder import find_videos

    if isinstance(source, (str, Path)):
        for p in find_videos(source):
            yield str(p), functools.partial(read_video, p, max_frames)
    elif isinstance(source, ClipDataset):
        for e in source.videos:
            yield e.path, functools.partial(read_video, e.path, max_frames)
    elif isinstance(source, dict):
        for name, x in source.items():
            yield str(name), functools.partial(as_frames, x)
    elif torch.is_tensor(source) and source.ndim == 5:  # a batch (b, c, t, h, w)
        for i in range(len(source)):
            yield str(i), functools.partial(as_frames, source[i])
    elif isinstance(source, torch.utils.data.Dataset):  # e.g. MovingShapes101: item["video"]
        for i in range(len(source)):
            item = source[i]
            yield str(item.get("path", i)), functools.partial(as_frames, item["video"])
    else:  # a list of clips or (name, clip) pairs
        for i, x in enumerate(source):
            if isinstance(x, tuple) and len(x) == 2:
                yield str(x[0]), functools.partial(as_frames, x[1])
            else:
                yield str(i), functools.partial(as_frames, x)


def filter_videos(source, stages=None, report=None, max_frames: int | None = None,
                  progress: bool = False) -> FilterResult:
    """Run the quality filter over ``source``; return kept names and the report.

    source: a folder (searched recursively for videos), a ``UCF101`` / ``VideoFolder``
    (its source videos), a Dataset whose items have ``video``, a dict ``{name: clip}``,
    a batch (b, c, t, h, w) or a list of clips / ``(name, clip)`` pairs. Clips are uint8
    (t, h, w, 3) or float (c, t, h, w) in [-1, 1]. A file that fails to decode is dropped
    by the ``corrupt`` stage. stages: ``(name, fn)`` pairs (default
    :func:`default_stages`). report: optional ``.json`` / ``.csv`` path to write.
    ``max_frames`` caps decoding per file (long videos).
    """
    stages = default_stages() if stages is None else list(stages)
    res = FilterResult()
    items = list(_items(source, max_frames))
    for name, load in tqdm(items, desc="filter", unit="clip", disable=not progress):
        try:
            frames = load()
        except (CorruptVideoError, FileNotFoundError) as e:
            res.dropped.append({"path": name, "stage": "corrupt",
                                "reason": getattr(e, "reason", None) or str(e)})
            continue
        verdict = check(frames, stages, name=name)
        if verdict is None:
            res.kept.append(name)
        else:
            res.dropped.append({"path": name, "stage": verdict[0], "reason": verdict[1]})
    by_stage = {name: 0 for name in ["corrupt", *(n for n, _ in stages)]}
    for d in res.dropped:
        by_stage[d["stage"]] += 1
    res.report = {"total": len(items), "kept": len(res.kept), "dropped": len(res.dropped),
                  "dropped_by_stage": by_stage,
                  "thresholds": {n: _thresholds(s) for n, s in stages},
                  "dropped_items": res.dropped, "kept_items": res.kept}
    if report is not None:
        write_report(res.report, report)
    return res


def write_report(report: dict, path) -> Path:
    """Write a filter report: ``.json`` (the whole dict) or ``.csv`` (one row per clip)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.dumps(report, indent=2).encode()
    elif suffix == ".csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["path", "status", "stage", "reason"])
        for d in report["dropped_items"]:
            w.writerow([d["path"], "dropped", d["stage"], d["reason"]])
        for p in report["kept_items"]:
            w.writerow([p, "kept", "", ""])
        data = buf.getvalue().encode()
    else:
        raise ValueError(f"{path}: expected a report path ending in .json or .csv")
    atomic_write_bytes(path, data)
    return path
