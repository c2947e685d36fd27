"""Write MovingShapes-101 to disk in UCF-101's official layout, as real encoded AVI files.

    export_ucf101("data/ms101")                                  # all 13,320 clips (minutes)
    export_ucf101("/tmp/tiny", classes=3, groups=[1, 8])         # a handful, in seconds
    ds = UCF101("data/ms101", split="train", fold=1)             # read back like real UCF-101

writes::

    OUT/UCF-101/<Class>/v_<Class>_gXX_cYY.avi       MPEG-4 part 2 tagged XVID (as UCF-101)
    OUT/ucfTrainTestlist/classInd.txt               "1 ApproachCircle"
    OUT/ucfTrainTestlist/trainlist0{1,2,3}.txt      "ApproachCircle/v_ApproachCircle_g08_c01.avi 1"
    OUT/ucfTrainTestlist/testlist0{1,2,3}.txt       "ApproachCircle/v_ApproachCircle_g01_c01.avi"

Why: the real-data loader, the quality filter and the cache are then tested on real
compressed files (codec artefacts, container headers, frame counts) without a download.

A class subset is renumbered 1..K in ``classInd.txt`` (a self-contained K-class data set,
so ``train --preset tiny`` with ``num_classes=K`` uses all of it). Existing files are kept
(each is written atomically), so an interrupted export resumes where it stopped.
"""

from __future__ import annotations

from pathlib import Path

from viddiff_mini.utils import tqdm

from . import synthetic
from .clips import to_uint8_frames
from .ucf101 import LIST_DIR, VIDEO_DIR
from .video_io import write_video

CHUNK = 32  # clips rendered per render_batch call


def resolve_classes(classes) -> list[int]:
    """Labels (0..100) from None (all) | int N (the first N) | names or labels."""
    names = synthetic.CLASS_NAMES
    if classes is None:
        return list(range(len(names)))
    if isinstance(classes, str):
        classes = [c.strip() for c in classes.split(",") if c.strip()]
        if len(classes) == 1 and classes[0].isdigit():
            classes = int(classes[0])
    if isinstance(classes, int):
        if not 1 <= classes <= len(names):
            raise ValueError(f"classes: expected a count in 1..{len(names)}, got {classes}")
        return list(range(classes))
    out = []
    for c in classes:
        if isinstance(c, str) and not c.isdigit():
            if c not in names:
                raise ValueError(f"classes: unknown class {c!r}; expected MovingShapes-101 "
                                 f"names such as {names[0]!r}, {names[1]!r}")
            out.append(names.index(c))
        elif 0 <= int(c) < len(names):
            out.append(int(c))
        else:
            raise ValueError(f"classes: label {c!r} out of range 0..{len(names) - 1}")
    if not out:
        raise ValueError("classes: expected at least one class")
    return sorted(set(out))


def resolve_groups(groups) -> list[int]:
    """Group numbers (1..25) from None (all) | an iterable of numbers."""
    if groups is None:
        return list(range(1, synthetic.NUM_GROUPS + 1))
    if isinstance(groups, int):
        raise ValueError(f"groups: expected a list of group numbers 1..{synthetic.NUM_GROUPS} "
                         f"(e.g. [1, 8] or range(1, 8)), got the int {groups}")
    out = sorted({int(g) for g in groups})
    bad = [g for g in out if not 1 <= g <= synthetic.NUM_GROUPS]
    if bad or not out:
        raise ValueError(f"groups: expected group numbers in 1..{synthetic.NUM_GROUPS}, "
                         f"got {list(groups)}")
    return out


def clip_filename(class_name: str, group: int, clip: int) -> str:
    """UCF-101's file name for clip ``clip`` of group ``group``: ``v_Class_g08_c01.avi``."""
    return f"v_{class_name}_g{group:02d}_c{clip:02d}.avi"


def export_ucf101(out, frames: int = 16, size: int = 64, classes=None, groups=None,
                  clips_per_group: int | None = None, fps: int = 25, seed: int = 0,
                  progress: bool = True, overwrite: bool = False) -> dict:
    """Render MovingShapes-101 clips and write them in the UCF-101 layout under ``out``.

    classes: None (all 101) | int N (the first N) | list of names / labels. groups: None
    (1..25) | list of group numbers. clips_per_group: keep at most this many clips per
    class and group. Returns a summary dict (``root``, ``videos``, ``written``,
    ``classes``, ``groups``, ``splits`` = counts per list file).
    """
    if clips_per_group is not None and not (isinstance(clips_per_group, int)
                                            and clips_per_group >= 1):
        raise ValueError(f"clips_per_group: expected None or an int >= 1, got {clips_per_group!r}")
    labels = resolve_classes(classes)
    group_list = resolve_groups(groups)
    keep_labels, keep_groups = set(labels), set(group_list)
    rows = [(i, lab, g, k) for i, (lab, g, k) in enumerate(synthetic.clip_index_table())
            if lab in keep_labels and g in keep_groups
            and (clips_per_group is None or k <= clips_per_group)]
    out = Path(out)
    names = synthetic.CLASS_NAMES
    rel = {i: f"{names[lab]}/{clip_filename(names[lab], g, k)}" for i, lab, g, k in rows}
    todo = [i for i, *_ in rows if overwrite or not (out / VIDEO_DIR / rel[i]).is_file()]

    bar = tqdm(total=len(todo), desc="export", unit="clip", disable=not progress)
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        video = synthetic.render_batch(chunk, frames=frames, size=size, seed=seed)["video"]
        for i, clip in zip(chunk, to_uint8_frames(video)):  # (b, t, h, w, 3) uint8
            write_video(out / VIDEO_DIR / rel[i], clip, fps=fps)
            bar.update(1)
    bar.close()

    # split lists: labels renumbered 1..K over the exported classes (all 101: unchanged)
    new_label = {lab: j + 1 for j, lab in enumerate(labels)}
    lists = out / LIST_DIR
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{new_label[lab]} {names[lab]}\n"
                                                for lab in labels))
    splits = {}
    for fold, test_groups in synthetic.TEST_GROUPS.items():
        train = [f"{rel[i]} {new_label[lab]}\n" for i, lab, g, _ in rows if g not in test_groups]
        test = [f"{rel[i]}\n" for i, _, g, _ in rows if g in test_groups]
        (lists / f"trainlist0{fold}.txt").write_text("".join(train))
        (lists / f"testlist0{fold}.txt").write_text("".join(test))
        splits[f"trainlist0{fold}"], splits[f"testlist0{fold}"] = len(train), len(test)
    return {"root": str(out), "videos": len(rows), "written": len(todo),
            "classes": [names[lab] for lab in labels], "groups": group_list, "splits": splits}
