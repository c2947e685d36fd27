"""UCF-101 from its official layout (or MovingShapes-101 exported in that layout).

The official download unpacks to::

    ROOT/UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi     (101 class folders, 13,320 AVIs)
    ROOT/ucfTrainTestlist/classInd.txt      "1 ApplyEyeMakeup"                   (1-based labels)
    ROOT/ucfTrainTestlist/trainlist01.txt   "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"
    ROOT/ucfTrainTestlist/testlist01.txt    "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi"

``root`` may be ``ROOT`` or the folder holding the class folders (``ROOT/UCF-101``, with
the lists next to it). The three folds split by *group* (``gXX``: the clips of one group
come from one longer video, so a group never straddles train and test).

    ds = UCF101("/data/UCF101", split="train", fold=1, frames=16, size=64)
    item = ds[0]   # video (3, 16, 64, 64) in [-1, 1], label 0, class_name "ApplyEyeMakeup",
                   # group 8, caption "apply eye makeup", path ".../v_ApplyEyeMakeup_g08_c01.avi"

The class of a video comes from its folder in the list file, not from its file name (the
official files disagree on case: folder ``HandstandPushups``, files ``v_HandStandPushups_*``).
"""

from __future__ import annotations

import re
from pathlib import Path

from .clips import ClipDataset, VideoEntry, words_of

LIST_DIR = "ucfTrainTestlist"
VIDEO_DIR = "UCF-101"
_GROUP = re.compile(r"_g(\d+)_c(\d+)", re.IGNORECASE)


def group_of(filename: str) -> int:
    """Group number from a UCF-style file name ``v_Class_gXX_cYY.avi`` (0 if none)."""
    m = _GROUP.search(Path(filename).stem)
    return int(m.group(1)) if m else 0


def find_layout(root) -> tuple[Path, Path]:
    """(folder holding the class folders, folder holding the split lists) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder; expected the UCF-101 root holding "
                                f"{VIDEO_DIR}/<Class>/*.avi and {LIST_DIR}/")
    videos = root / VIDEO_DIR if (root / VIDEO_DIR).is_dir() else root
    for lists in (root / LIST_DIR, videos.parent / LIST_DIR, root):
        if (lists / "classInd.txt").is_file():
            return videos, lists
    raise FileNotFoundError(f"{root / LIST_DIR / 'classInd.txt'}: missing; expected the "
                            f"official split files ({LIST_DIR}/classInd.txt, trainlist01.txt, "
                            f"testlist01.txt, ...) under {root} or next to {videos}")


def read_class_index(path) -> list[str]:
    """Class names by 0-based label from ``classInd.txt`` (lines ``"1 ApplyEyeMakeup"``)."""
    path = Path(path)
    names: dict[int, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path} line {n}: expected '<label> <ClassName>' (e.g. "
                             f"'1 ApplyEyeMakeup'), got {line!r}")
        names[int(parts[0])] = parts[1]
    if not names:
        raise ValueError(f"{path}: empty; expected one '<label> <ClassName>' line per class")
    if sorted(names) != list(range(1, len(names) + 1)):
        raise ValueError(f"{path}: expected labels 1..{len(names)} each once, got "
                         f"{sorted(names)[:5]}...")
    return [names[k] for k in range(1, len(names) + 1)]


def read_split_list(path, classes: list[str]) -> list[tuple[str, int]]:
    """``(relative path, 0-based label)`` rows of a train/test list.

    Train lists carry 1-based labels (checked against ``classInd.txt``); test lists have
    none (the label comes from the class folder in the path).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file missing; expected the official list "
                                f"({path.name}) with lines 'Class/v_Class_gXX_cYY.avi [label]'")
    index = {name: i for i, name in enumerate(classes)}
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        rel = parts[0].replace("\\", "/")
        cls = rel.split("/")[0] if "/" in rel else ""
        if cls not in index:
            raise ValueError(f"{path} line {n}: class {cls!r} of {rel!r} is not in classInd.txt; "
                             f"expected 'Class/v_Class_gXX_cYY.avi' with a class from "
                             f"classInd.txt (e.g. {classes[0]!r})")
        label = index[cls]
        if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError(f"{path} line {n}: expected 'Class/file.avi [label]', got {line!r}")
        if len(parts) == 2 and int(parts[1]) - 1 != label:
            raise ValueError(f"{path} line {n}: label {parts[1]} disagrees with classInd.txt "
                             f"({cls} = {label + 1})")
        rows.append((rel, label))
    if not rows:
        raise ValueError(f"{path}: lists no videos; expected lines 'Class/v_Class_gXX_cYY.avi'")
    return rows


class UCF101(ClipDataset):
    """UCF-101 (official layout) as a Dataset of clips.

    root: the download root (holding ``UCF-101/`` and ``ucfTrainTestlist/``) or the folder
    of class folders. split "train" | "test", fold 1 | 2 | 3. Clips: ``frames`` frames
    ``stride`` apart, resized and centre-cropped to ``size``; ``clips_per_video`` clips per
    video; ``sampling`` "random" (default for train, seeded by ``seed``) | "uniform"
    (default for test); ``short`` "loop" | "pad" | "skip" (see ``clips``).

    Items: ``video`` (3, t, h, w) in [-1, 1], ``label`` (0-based), ``class_name``, ``group``
    (from gXX), ``caption`` (the class name in words), ``path``. Bad videos are skipped at
    read time and listed in ``skipped`` (see ``clips.ClipDataset``).
    """

    def __init__(self, root, split: str = "train", fold: int = 1, frames: int = 16,
                 size=64, stride: int = 1, clips_per_video: int = 1, seed: int = 0,
                 short: str = "loop", sampling: str | None = None):
        if split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        if fold not in (1, 2, 3):
            raise ValueError(f"fold: expected 1, 2 or 3 (official UCF-101 splits), got {fold!r}")
        sampling = sampling or ("random" if split == "train" else "uniform")
        self._setup_clips(frames, size, stride, clips_per_video, seed, short, sampling)
        self.split, self.fold = split, fold
        self.video_root, self.list_root = find_layout(root)
        self.root = Path(root)
        self.class_names = read_class_index(self.list_root / "classInd.txt")
        list_file = self.list_root / f"{split}list0{fold}.txt"
        rows = read_split_list(list_file, self.class_names)
        self.videos = [VideoEntry(str(self.video_root / rel), label, self.class_names[label],
                                  group_of(rel), words_of(self.class_names[label]))
                       for rel, label in rows]
        # A wrong root is a user mistake (fail now); a few missing files are data damage
        # (skipped at read time like corrupt ones, and counted).
        if not any(Path(e.path).is_file() for e in self.videos):  # stops at the first hit
            raise FileNotFoundError(f"{self.video_root}: none of the {len(self.videos)} videos "
                                    f"listed in {list_file} exist; expected e.g. "
                                    f"{self.video_root / rows[0][0]}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (f"UCF101({str(self.root)!r}, split={self.split!r}, fold={self.fold}, "
                f"videos={len(self.videos)}, clips={len(self)}, classes={self.num_classes})")
