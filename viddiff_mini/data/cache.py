"""Decode once, train many times: a uint8 memory-mapped clip cache (section 11.1.4).

Decoding compressed video is the slow part of a real-video data pipeline: an XVID clip
is entropy-decoded, motion-compensated, colour-converted and resized every time it is
read. Training reads each clip many times, so the cheap trick is to do all that once and
store the finished clips as raw uint8 in one ``.npy`` file that is memory-mapped: reading
a clip is then a copy of ``t * h * w * 3`` bytes (the OS page cache keeps hot clips in RAM).

    build_cache(UCF101(root, frames=16, size=64), "cache/ucf_train")    # decode once
    ds = CachedClips("cache/ucf_train")                                  # same item keys
    bench_cache(UCF101(root, ...), ds)     # {"decode_clips_per_s": ..., "cached_clips_per_s": ...}

The price: the cache freezes one sampled clip per item (no new random crops per epoch;
use ``clips_per_video > 1`` for variety) and costs ``t * h * w * 3`` bytes per clip
(16 x 64 x 64 x 3 = 192 kB; 9,537 UCF-101 train clips = 1.9 GB).

Layout: ``OUT/clips.npy`` uint8 (n, t, h, w, 3) and ``OUT/index.json`` (one record per clip
with label, class_name, group, caption, path; the class names; the skipped videos).
``index.json`` is written last, so a cache without it is incomplete and is refused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from viddiff_mini.utils import atomic_write_bytes, tqdm

from .clips import SKIP_ERRORS, ClipDataset, to_model_video, to_uint8_frames

INDEX = "index.json"
CLIPS = "clips.npy"


def _as_dataset(source, frames: int, size: int, clips_per_video: int, seed: int):
    if isinstance(source, Dataset):
        return source
    if isinstance(source, (str, Path)):
        from .folder import VideoFolder
        return VideoFolder(source, frames=frames, size=size, clips_per_video=clips_per_video,
                           seed=seed)
    raise ValueError(f"source: expected a Dataset (UCF101, VideoFolder, ...) or a folder path, "
                     f"got {type(source).__name__}")


def _record(item: dict, i: int) -> dict:
    return {"label": int(item.get("label", 0)), "class_name": str(item.get("class_name", "")),
            "group": int(item.get("group", 0)), "caption": str(item.get("caption", "")),
            "path": str(item.get("path", i))}


def build_cache(source, out, frames: int = 16, size: int = 64, clips_per_video: int = 1,
                seed: int = 0, progress: bool = True) -> dict:
    """Decode every clip of ``source`` once into ``out/clips.npy`` + ``out/index.json``.

    source: a data set whose items have ``video`` (3, t, h, w) in [-1, 1] (``UCF101``,
    ``VideoFolder``, ``MovingShapes101``, ...) or a folder path (read as ``VideoFolder``
    with ``frames``, ``size``, ``clips_per_video``, ``seed``). Clips of unreadable videos
    are left out (not substituted) and listed under ``skipped``. Returns the index dict.
    """
    ds = _as_dataset(source, frames, size, clips_per_video, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (CLIPS + ".tmp")
    (out / INDEX).unlink(missing_ok=True)  # the old cache is invalid from here on
    records: list[dict] = []
    skipped: dict[str, str] = {}
    mm = None
    for i in tqdm(range(len(ds)), desc="cache", unit="clip", disable=not progress):
        if isinstance(ds, ClipDataset):  # strict read: leave bad clips out of the cache
            try:
                clip = ds.load_clip(i)
            except SKIP_ERRORS as err:
                path = getattr(err, "path", None) or ds.videos[i // ds.clips_per_video].path
                skipped.setdefault(str(path), getattr(err, "reason", None) or str(err))
                continue
            record = ds.meta(i)
        else:
            item = ds[i]
            clip = to_uint8_frames(item["video"])
            record = _record(item, i)
        if mm is None:  # the clip shape is known once the first clip is decoded
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                           shape=(len(ds), *clip.shape))
        if clip.shape != mm.shape[1:]:
            raise ValueError(f"{record['path']}: clip shape {clip.shape} differs from the "
                             f"first clip's {mm.shape[1:]}; a cache needs one clip size")
        mm[len(records)] = clip
        records.append(record)
    if mm is None:
        raise ValueError(f"source: no readable clips to cache ({len(skipped)} skipped)")
    mm.flush()
    n = len(records)
    if n < len(mm):  # some clips were skipped: copy into a file of the exact length
        exact = np.lib.format.open_memmap(out / (CLIPS + ".tmp2"), mode="w+", dtype=np.uint8,
                                          shape=(n, *mm.shape[1:]))
        for s in range(0, n, 256):
            exact[s:s + 256] = mm[s:min(s + 256, n)]
        exact.flush()
        del mm, exact
        os.replace(out / (CLIPS + ".tmp2"), tmp)
    else:
        del mm
    os.replace(tmp, out / CLIPS)
    for e in getattr(ds, "skipped", []):  # skips the data set saw before (its own list)
        skipped.setdefault(e[0], e[1])
    index = {"version": 1, "file": CLIPS, "count": n,
             "shape": [n, *np.load(out / CLIPS, mmap_mode="r").shape[1:]],
             "class_names": list(getattr(ds, "class_names", [])),
             "source": repr(ds), "items": records,
             "skipped": [[p, r] for p, r in skipped.items()]}
    atomic_write_bytes(out / INDEX, json.dumps(index, indent=1).encode())
    return index


class CachedClips(Dataset):
    """A cache written by :func:`build_cache`, as a Dataset with the source's item keys.

    Items: ``video`` float (3, t, h, w) in [-1, 1] (bit-identical to the decoded clip),
    ``label``, ``class_name``, ``group``, ``caption``, ``path``. ``label_of(i)`` needs no
    pixels; ``skipped`` lists the videos the build left out. The memory map is opened lazily
    in each process, so the data set can go to DataLoader workers.
    """

    def __init__(self, root):
        self.root = Path(root)
        index_path = self.root / INDEX
        if not index_path.is_file():
            raise FileNotFoundError(f"{index_path}: missing; expected a cache written by "
                                    f"build_cache (an interrupted build has no index)")
        try:
            self.index = json.loads(index_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{index_path}: not valid JSON ({e.msg})") from e
        self.records = self.index["items"]
        self.class_names = self.index.get("class_names", [])
        self.skipped = [tuple(x) for x in self.index.get("skipped", [])]
        self._mm = None
        if not (self.root / self.index["file"]).is_file():
            raise FileNotFoundError(f"{self.root / self.index['file']}: clip file of the cache "
                                    f"is missing")

    def __getstate__(self):  # a memmap does not pickle; each worker reopens it
        state = dict(self.__dict__)
        state["_mm"] = None
        return state

    @property
    def clips(self) -> np.ndarray:
        """The memory-mapped uint8 array (n, t, h, w, 3)."""
        if self._mm is None:
            self._mm = np.load(self.root / self.index["file"], mmap_mode="r")
        return self._mm

    def __len__(self) -> int:
        return len(self.records)

    def label_of(self, i: int) -> int:
        return int(self.records[i]["label"])

    def frames(self, i: int) -> np.ndarray:
        """The stored uint8 clip (t, h, w, 3) of item ``i`` (a copy, not a view of the map)."""
        return np.array(self.clips[i])

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} cached clips")
        return {"video": to_model_video(self.frames(i)), **self.records[i]}

    def __repr__(self) -> str:
        return f"CachedClips({str(self.root)!r}, clips={len(self)}, shape={self.index['shape']})"


def bench_cache(dataset, cache: CachedClips, n: int = 32, repeats: int = 1) -> dict:
    """Clips/s reading ``n`` items from the decoding ``dataset`` and from its ``cache``.

    Both paths produce the model's input (``item["video"]`` as float (3, t, h, w)), so the
    ratio is what training would gain. Returns a dict with ``decode_clips_per_s``,
    ``cached_clips_per_s``, ``speedup`` and ``n``.
    """
    n = max(1, min(n, len(dataset), len(cache)))

    def rate(ds) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in range(n):
                ds[i]["video"]
            best = min(best, time.perf_counter() - t0)
        return n / max(best, 1e-9)

    cache[0]  # open the memory map outside the timing
    decode, cached = rate(dataset), rate(cache)
    return {"n": n, "decode_clips_per_s": decode, "cached_clips_per_s": cached,
            "speedup": cached / decode}
