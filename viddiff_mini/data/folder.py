"""Any folder of videos as a Dataset of clips, with optional captions.

    ROOT/                     ROOT/
      cats/a.mp4                clip1.mp4        <- no sub-folders: one class, label 0
      cats/more/b.webm          clip2.gif
      dogs/c.avi
    -> classes ["cats", "dogs"] (sorted sub-folder names; files are found recursively)

Captions (for text conditioning) come from a file mapping each video to a sentence:

* CSV, one ``path,caption`` row per video (an optional ``path,caption`` header; quote a
  caption that holds commas): ``cats/a.mp4,"a cat jumps, then lands"``
* JSONL, one object per line: ``{"path": "cats/a.mp4", "caption": "a cat jumps"}``

Paths are relative to ``root`` (absolute paths work too). Videos without a caption get the
class name in words (``"jump_rope"`` -> ``"jump rope"``), or "" without classes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from pathlib import Path

from .clips import ClipDataset, VideoEntry, words_of
from .ucf101 import group_of

EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".gif")
LABEL_MODES = ("auto", "folders", "none")


def find_videos(root, extensions=EXTENSIONS) -> list[Path]:
    """Video files under ``root`` (recursively, hidden files skipped), sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder; expected a folder of videos "
                                f"({', '.join(extensions)})")
    exts = {e.lower() for e in extensions}
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames
                  if not f.startswith(".") and Path(f).suffix.lower() in exts]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_captions(path) -> dict[str, str]:
    """``{path: caption}`` from a CSV (``path,caption``) or JSONL file.

    A malformed line raises ValueError naming the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: captions file not found; expected a CSV "
                                f"('path,caption' rows) or JSONL file")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    out: dict[str, str] = {}
    if suffix == ".csv":
        for n, row in enumerate(csv.reader(io.StringIO(text)), 1):
            if not row or all(not c.strip() for c in row):
                continue
            if n == 1 and [c.strip().lower() for c in row] == ["path", "caption"]:
                continue  # header
            if len(row) != 2 or not row[0].strip():
                raise ValueError(f"{path} line {n}: expected 2 fields 'path,caption' (quote a "
                                 f"caption that contains commas), got {len(row)}: {row!r}")
            out[row[0].strip()] = row[1].strip()
    elif suffix in (".jsonl", ".ndjson"):
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {n}: not valid JSON ({e.msg}); expected "
                                 f'{{"path": ..., "caption": ...}}') from e
            if not (isinstance(obj, dict) and isinstance(obj.get("path"), str)
                    and isinstance(obj.get("caption"), str)):
                raise ValueError(f"{path} line {n}: expected an object with string keys "
                                 f'"path" and "caption", got {line.strip()[:80]!r}')
            out[obj["path"]] = obj["caption"]
    else:
        raise ValueError(f"{path}: unknown captions format {suffix!r}; expected .csv "
                         f"('path,caption') or .jsonl")
    return out


class VideoFolder(ClipDataset):
    """Every video under ``root`` (mp4 / avi / webm / mov / gif, recursively) as clips.

    Labels: ``labels="auto"`` uses the immediate sub-folder names (sorted) when every video
    sits in a sub-folder and label 0 when none does (a mix is an error: pick ``"folders"``
    or ``"none"``). ``captions``: a CSV / JSONL file (see module docstring) or a dict
    ``{path: caption}``. Clip arguments as in ``UCF101`` (``sampling`` default "random").

    Items: ``video`` (3, t, h, w) in [-1, 1], ``label``, ``class_name``, ``group`` (from a
    UCF-style ``_gXX_`` in the file name, else 0), ``caption``, ``path``. Bad videos are
    skipped at read time and listed in ``skipped`` (see ``clips.ClipDataset``).
    """

    def __init__(self, root, captions=None, frames: int = 16, size=64, stride: int = 1,
                 clips_per_video: int = 1, seed: int = 0, short: str = "loop",
                 sampling: str = "random", labels: str = "auto", extensions=EXTENSIONS):
        self._setup_clips(frames, size, stride, clips_per_video, seed, short, sampling)
        if labels not in LABEL_MODES:
            raise ValueError(f"labels: expected one of {LABEL_MODES}, got {labels!r}")
        self.root = Path(root)
        files = find_videos(self.root, extensions)
        if not files:
            raise ValueError(f"{self.root}: no videos found; expected files ending in "
                             f"{', '.join(extensions)} (searched recursively)")
        rel = [f.relative_to(self.root) for f in files]
        nested = [len(r.parts) > 1 for r in rel]
        if labels == "auto":
            if any(nested) and not all(nested):
                loose = [r.as_posix() for r, n in zip(rel, nested) if not n]
                raise ValueError(f"{self.root}: {len(loose)} videos (e.g. {loose[0]!r}) sit "
                                 f"directly in the folder while others are in class sub-folders; "
                                 f"move them into a sub-folder, or pass labels='none' (all "
                                 f"label 0) or labels='folders'")
            labels = "folders" if all(nested) else "none"
        if labels == "folders":
            names = [r.parts[0] if len(r.parts) > 1 else "." for r in rel]
            self.class_names = sorted(set(names))
        else:
            names = [""] * len(rel)
            self.class_names = [""]
        index = {c: i for i, c in enumerate(self.class_names)}
        caption_of = self._captions(captions, rel, files)
        self.videos = []
        for f, r, c in zip(files, rel, names):
            caption = caption_of.get(r.as_posix(), words_of(c) if c not in ("", ".") else "")
            self.videos.append(VideoEntry(str(f), index[c], c, group_of(f.name), caption))

    def _captions(self, captions, rel: list[Path], files: list[Path]) -> dict[str, str]:
        """Captions keyed by the relative posix path of each video."""
        if captions is None:
            return {}
        source = captions if isinstance(captions, dict) else read_captions(captions)
        by_abs = {str(f.resolve()): r.as_posix() for f, r in zip(files, rel)}
        known = {r.as_posix() for r in rel}
        out, unknown = {}, []
        for p, cap in source.items():
            key = Path(p).as_posix()
            if key not in known and Path(p).is_absolute():
                key = by_abs.get(str(Path(p).resolve()), key)
            if key in known:
                out[key] = cap
            else:
                unknown.append(p)
        if unknown:
            where = captions if not isinstance(captions, dict) else "captions"
            warnings.warn(f"{where}: {len(unknown)} captions name videos not found under "
                          f"{self.root} (e.g. {unknown[0]!r}); they are ignored", stacklevel=3)
        return out

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (f"VideoFolder({str(self.root)!r}, videos={len(self.videos)}, clips={len(self)}, "
                f"classes={self.num_classes})")
