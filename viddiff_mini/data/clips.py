"""From a video file to a training clip: sample frames, resize, centre-crop, normalise.

A diffusion model trains on fixed-size clips: ``frames`` frames, ``stride`` apart, at
``size`` x ``size`` pixels, as float ``(c, t, h, w)`` in [-1, 1]. Real videos differ in
length, frame rate and aspect ratio, so every loader does the same four steps::

    info = probe_video(path)                                         # frame count, no decoding
    idx = clip_indices(info.frames, frames=16, stride=2, start=s)    # which frames
    frames = resize_center_crop(read_frames(path, idx), size=64)     # uint8 (16, 64, 64, 3)
    video = to_model_video(frames)                                   # float (3, 16, 64, 64)

**Short videos.** A video shorter than the clip's span ``(frames - 1) * stride + 1`` is
handled by the documented policy ``short``:

* ``"loop"`` (default): play the video again from its first frame (``i mod n``). Motion
  stays real motion, with one jump at the loop point.
* ``"pad"``: hold the last frame (a freeze at the end, no jump).
* ``"skip"``: do not use the video; a data set counts it as skipped ("too short").

:class:`ClipDataset` is the reading policy the real-data sets share (``UCF101``,
``VideoFolder``): a corrupt, truncated, missing or (with ``short="skip"``) too-short video
is skipped *at read time* -- the item is replaced by the next good clip, the path and the
reason go to ``dataset.skipped``, one warning is issued -- so an epoch never crashes on
one bad file among thousands.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import Dataset

from .video_io import CorruptVideoError, VideoInfo, probe_video, read_video

SHORT_POLICIES = ("loop", "pad", "skip")
SAMPLING = ("random", "uniform")


class ShortVideoError(ValueError):
    """A video shorter than the clip span under ``short="skip"`` (``path``, ``reason``)."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))


# Everything that makes a data set skip one video instead of stopping the run.
SKIP_ERRORS = (CorruptVideoError, ShortVideoError, FileNotFoundError)


# --------------------------------------------------------------------------- argument checks
def check_clip_args(frames: int, size, stride: int, clips_per_video: int = 1,
                    short: str = "loop", sampling: str = "random") -> None:
    """Raise a ValueError naming the first bad clip argument."""
    if not (isinstance(frames, int) and frames >= 1):
        raise ValueError(f"frames: expected an int >= 1, got {frames!r}")
    sizes = size if isinstance(size, (tuple, list)) else (size,)
    if not (len(sizes) in (1, 2) and all(isinstance(s, int) and s >= 1 for s in sizes)):
        raise ValueError(f"size: expected an int >= 1 or (height, width), got {size!r}")
    if not (isinstance(stride, int) and stride >= 1):
        raise ValueError(f"stride: expected an int >= 1, got {stride!r}")
    if not (isinstance(clips_per_video, int) and clips_per_video >= 1):
        raise ValueError(f"clips_per_video: expected an int >= 1, got {clips_per_video!r}")
    if short not in SHORT_POLICIES:
        raise ValueError(f"short: expected one of {SHORT_POLICIES}, got {short!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling: expected one of {SAMPLING}, got {sampling!r}")


# --------------------------------------------------------------------------- which frames
def clip_span(frames: int, stride: int = 1) -> int:
    """Number of source frames a clip covers: ``(frames - 1) * stride + 1``."""
    return (frames - 1) * stride + 1


def clip_starts(num_frames: int, frames: int, stride: int = 1, clips: int = 1,
                sampling: str = "uniform", generator: np.random.Generator | None = None
                ) -> list[int]:
    """First frame of each of ``clips`` clips in a video of ``num_frames`` frames.

    ``"uniform"``: the centres of ``clips`` equal segments of the valid start range
    (one clip = the middle of the video), the same every time. ``"random"``: uniform random
    starts drawn from ``generator`` (pass a seeded one: randomness is explicit). A video
    shorter than the span has only start 0.
    """
    max_start = num_frames - clip_span(frames, stride)
    if max_start <= 0:
        return [0] * clips
    if sampling == "uniform":
        return [round(max_start * (j + 0.5) / clips) for j in range(clips)]
    if generator is None:
        raise ValueError("generator: random sampling needs a seeded numpy Generator")
    return [int(s) for s in generator.integers(0, max_start + 1, size=clips)]


def clip_indices(num_frames: int, frames: int, stride: int = 1, start: int = 0,
                 short: str = "loop", path="video") -> np.ndarray:
    """Frame indices ``start, start + stride, ...`` (``frames`` of them) into the video.

    When the video is shorter than the span, ``short`` decides: ``"loop"`` wraps the
    indices (``i mod num_frames``), ``"pad"`` repeats the last frame, ``"skip"`` raises
    :class:`ShortVideoError` naming ``path``. Returns int64 numpy ``(frames,)``.
    """
    if short not in SHORT_POLICIES:
        raise ValueError(f"short: expected one of {SHORT_POLICIES}, got {short!r}")
    if num_frames < 1:
        raise ShortVideoError(path, "no frames")
    idx = start + stride * np.arange(frames, dtype=np.int64)
    if idx[-1] < num_frames:
        return idx
    if short == "skip":
        raise ShortVideoError(path, f"too short: {num_frames} frames < clip span "
                                    f"{clip_span(frames, stride)} ({frames} frames, stride {stride})")
    if short == "loop":
        return idx % num_frames
    return np.minimum(idx, num_frames - 1)


def read_frames(path, indices: np.ndarray) -> np.ndarray:
    """Decode only the range of the file that ``indices`` needs; uint8 (len(indices), h, w, 3).

    If the file ends a frame or two before its header said (common, and within the
    tolerance of :func:`read_video`), the missing indices take the last decoded frame.
    """
    lo, hi = int(indices.min()), int(indices.max())
    frames = read_video(path, max_frames=hi - lo + 1, start=lo)
    return frames[np.minimum(indices - lo, len(frames) - 1)]


# --------------------------------------------------------------------------- pixels
def _hw(size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_center_crop(frames, size) -> np.ndarray:
    """Resize so the frame covers ``size``, then cut out the centre.

    frames: uint8 (t, h, w, c) numpy or torch. size: int (square) or (height, width).
    The scale is the smallest that covers the target (so nothing is stretched: aspect ratio
    kept), bilinear with antialiasing (no aliasing when shrinking 320x240 to 64x64).
    Returns uint8 numpy (t, height, width, c); frames already at the size are returned as is.
    """
    th, tw = _hw(size)
    arr = frames.detach().cpu().numpy() if torch.is_tensor(frames) else np.asarray(frames)
    if arr.ndim != 4:
        raise ValueError(f"frames: expected uint8 (t, h, w, c), got shape {arr.shape}")
    _, h, w, _ = arr.shape
    if (h, w) == (th, tw):
        return arr
    x = torch.from_numpy(arr)
    scale = max(th / h, tw / w)
    nh, nw = max(th, math.ceil(h * scale - 1e-6)), max(tw, math.ceil(w * scale - 1e-6))
    if (nh, nw) != (h, w):
        y = rearrange(x, "t h w c -> t c h w").float()
        y = F.interpolate(y, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        x = rearrange(y.round().clamp(0, 255).to(torch.uint8), "t c h w -> t h w c")
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[:, top:top + th, left:left + tw].contiguous().numpy()


def to_model_video(frames) -> torch.Tensor:
    """uint8 (t, h, w, c) -> float (c, t, h, w) in [-1, 1]; a batch (b, t, h, w, c) -> (b, c, t, h, w).

    ``x / 127.5 - 1``, exactly inverted by :func:`to_uint8_frames` (so a uint8 cache
    reproduces the decoded clip bit for bit).
    """
    x = torch.as_tensor(np.asarray(frames)) if not torch.is_tensor(frames) else frames
    if x.dtype != torch.uint8:
        raise ValueError(f"frames: expected uint8 (t, h, w, c) in 0..255, got dtype {x.dtype}")
    if x.ndim == 4:
        return rearrange(x, "t h w c -> c t h w").float() / 127.5 - 1
    if x.ndim == 5:
        return rearrange(x, "b t h w c -> b c t h w").float() / 127.5 - 1
    raise ValueError(f"frames: expected uint8 (t, h, w, c) or (b, t, h, w, c), got shape "
                     f"{tuple(x.shape)}")


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """float (c, t, h, w) in [-1, 1] -> uint8 numpy (t, h, w, c); batches (b, c, t, h, w) too."""
    if not torch.is_tensor(video) or not video.is_floating_point():
        raise ValueError("video: expected a float tensor (c, t, h, w) in [-1, 1]")
    v = ((video.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if v.ndim == 4:
        return rearrange(v, "c t h w -> t h w c").numpy()
    if v.ndim == 5:
        return rearrange(v, "b c t h w -> b t h w c").numpy()
    raise ValueError(f"video: expected (c, t, h, w) or (b, c, t, h, w), got {tuple(v.shape)}")


# --------------------------------------------------------------------------- captions
def words_of(name: str) -> str:
    """A CamelCase class name in words: ``"ApplyEyeMakeup"`` -> ``"apply eye makeup"``.

    Acronyms stay together (``"PlayingTV"`` -> ``"playing tv"``); underscores, dashes and
    spaces also split (folder names such as ``"jump_rope"``).
    """
    parts = re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", name)
    return " ".join(p.lower() for p in parts)


# --------------------------------------------------------------------------- the shared data set
@dataclass(frozen=True)
class VideoEntry:
    """One video of a data set: where it is and what it is (no pixels)."""

    path: str
    label: int
    class_name: str
    group: int
    caption: str


class ClipDataset(Dataset):
    """Clips from a list of video files, with the skip-at-read-time policy.

    Subclasses fill ``self.videos`` (a list of :class:`VideoEntry`). Item ``i`` is clip
    ``i % clips_per_video`` of video ``i // clips_per_video``: a dict with ``video``
    float (3, t, h, w) in [-1, 1], ``label`` int, ``class_name``, ``group`` int, ``caption``
    and ``path``.

    A video that cannot be used (corrupt, truncated, missing, too short under
    ``short="skip"``) is replaced by the next good clip (i + 1, i + 2, ... wrapping), so the
    substitution is deterministic; ``skipped`` lists ``(path, reason)`` once per bad file,
    and the first skip issues one ``warnings.warn``. With DataLoader workers each worker
    keeps its own ``skipped`` (read it from the main process with ``num_workers=0``, or
    use ``quality.filter_videos`` beforehand).

    ``sampling="random"`` draws clip starts from ``numpy.random.default_rng((seed, i,
    epoch))``: the same clip for the same item and epoch in any process; call
    :meth:`set_epoch` for new clips each epoch.
    """

    videos: list[VideoEntry]

    def _setup_clips(self, frames: int, size, stride: int, clips_per_video: int, seed: int,
                     short: str, sampling: str) -> None:
        check_clip_args(frames, size, stride, clips_per_video, short, sampling)
        self.frames, self.size, self.stride = frames, size, stride
        self.clips_per_video, self.seed, self.short, self.sampling = (clips_per_video, seed,
                                                                     short, sampling)
        self.epoch = 0
        self.skipped: list[tuple[str, str]] = []
        self._bad: set[int] = set()
        self._info: dict[int, VideoInfo] = {}
        self._warned = False

    # ---- sizes and labels (no decoding)
    def __len__(self) -> int:
        return len(self.videos) * self.clips_per_video

    def _entry(self, i: int) -> VideoEntry:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        return self.videos[(i % len(self)) // self.clips_per_video]

    def label_of(self, i: int) -> int:
        """Label of item ``i`` without decoding (for class-balanced samplers, subsets)."""
        return self._entry(i).label

    @property
    def classes(self) -> list[str]:
        """Class names by label."""
        return list(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        """New random clip starts for a new epoch (``sampling="random"`` only)."""
        self.epoch = int(epoch)

    # ---- reading
    def info(self, v: int) -> VideoInfo:
        """Header information of video ``v`` (probed once, then remembered)."""
        if v not in self._info:
            self._info[v] = probe_video(self.videos[v].path)
        return self._info[v]

    def load_clip(self, i: int) -> np.ndarray:
        """The uint8 (t, h, w, 3) clip of item ``i`` after sampling, resize and crop.

        Strict: raises ``CorruptVideoError`` / ``ShortVideoError`` / ``FileNotFoundError``
        for a bad video (``__getitem__`` is the forgiving path).
        """
        entry = self._entry(i)
        i %= len(self)
        v, j = divmod(i, self.clips_per_video)
        n = self.info(v).frames
        rng = None
        if self.sampling == "random":
            rng = np.random.default_rng((self.seed, v, self.epoch))
        start = clip_starts(n, self.frames, self.stride, self.clips_per_video, self.sampling,
                            rng)[j]
        idx = clip_indices(n, self.frames, self.stride, start, self.short, entry.path)
        return resize_center_crop(read_frames(entry.path, idx), self.size)

    def _skip(self, v: int, err: Exception) -> None:
        path = self.videos[v].path
        reason = getattr(err, "reason", None) or (
            "missing file" if isinstance(err, FileNotFoundError) else str(err))
        self._bad.add(v)
        self.skipped.append((path, reason))
        if not self._warned:
            self._warned = True
            warnings.warn(f"{type(self).__name__}: skipping unreadable video {path} ({reason}); "
                          f"its items are replaced by the next good clip. Further skips are "
                          f"listed in dataset.skipped without more warnings.", stacklevel=3)

    def meta(self, i: int) -> dict:
        """Item ``i`` without the pixels: label, class_name, group, caption, path."""
        e = self._entry(i)
        return {"label": e.label, "class_name": e.class_name, "group": e.group,
                "caption": e.caption, "path": e.path}

    def item(self, i: int, frames: np.ndarray) -> dict:
        """The item dict of index ``i`` for an already loaded uint8 clip (t, h, w, 3)."""
        return {"video": to_model_video(frames), **self.meta(i)}

    def __getitem__(self, i: int) -> dict:
        self._entry(i)  # IndexError for out-of-range indices, like a list
        n = len(self)
        for k in range(n):
            j = (i + k) % n
            v = j // self.clips_per_video
            if v in self._bad:
                continue
            try:
                return self.item(j, self.load_clip(j))
            except SKIP_ERRORS as err:
                self._skip(v, err)
        raise RuntimeError(f"{type(self).__name__}: none of the {len(self.videos)} videos "
                           f"could be read; reasons in dataset.skipped, e.g. {self.skipped[:3]}")

    def summary(self) -> dict:
        """Counts per class and per group (from the file list; nothing is decoded)."""
        per_class: dict[str, int] = {}
        per_group: dict[int, int] = {}
        for e in self.videos:
            per_class[e.class_name] = per_class.get(e.class_name, 0) + 1
            per_group[e.group] = per_group.get(e.group, 0) + 1
        return {"videos": len(self.videos), "clips": len(self), "classes": per_class,
                "groups": dict(sorted(per_group.items()))}
