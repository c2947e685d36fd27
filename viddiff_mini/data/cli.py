"""``viddiff data``: export, inspect, filter and cache video data.

    viddiff data export OUT [--classes 5|NameA,NameB] [--groups 1,8|1-7] [--frames 16 --size 64]
    viddiff data inspect [--data shapes|ucf101:PATH|folder:PATH] [--out DIR] [--classes N]
    viddiff data filter PATH --report report.json
    viddiff data cache PATH --out DIR [--bench]

``export`` writes MovingShapes-101 in UCF-101's layout (XVID AVI + split lists);
``inspect`` prints counts per split, class and group and, with ``--out``, writes a
contact sheet (PNG, one frame per class) and a GIF per class; ``filter`` runs the
quality filter (``data.quality``) and writes its report; ``cache`` decodes a data set once
into a memory-mapped uint8 cache (``data.cache``), ``--bench`` compares read speeds.
PATH is ``ucf101:DIR``, ``folder:DIR`` or a plain DIR (UCF-101 layout when it has the
split lists, else any folder of videos).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from .clips import SKIP_ERRORS


# --------------------------------------------------------------------------- arguments
def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = sub.add_parser("export", help="write MovingShapes-101 in the UCF-101 layout (XVID AVI)")
    p.add_argument("out", help="output folder (gets UCF-101/ and ucfTrainTestlist/)")
    p.add_argument("--format", default="ucf101", choices=["ucf101"], help="layout (ucf101)")
    p.add_argument("--classes", help="N (the first N classes) or comma-separated class names")
    p.add_argument("--groups", help="group numbers: comma list and ranges, e.g. 1,8 or 1-7")
    p.add_argument("--clips-per-group", type=int, help="at most this many clips per class and group")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="rewrite files that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("inspect", help="counts per split/class/group, contact sheet and GIFs")
    p.add_argument("--data", default="shapes", help="shapes | ucf101:PATH | folder:PATH")
    p.add_argument("--out", help="folder for contact_sheet.png and gifs/<Class>.gif")
    p.add_argument("--classes", help="limit the pictures: N (first N classes) or comma names")
    p.add_argument("--clips", type=int, default=4, help="clips per class GIF")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)

    p = sub.add_parser("filter", help="quality filter: drop dark/static/cut/duplicate/corrupt videos")
    p.add_argument("path", help="folder of videos (searched recursively)")
    p.add_argument("--report", required=True, help="report file (.json or .csv)")
    p.add_argument("--min-frames", type=int, default=16)
    p.add_argument("--min-brightness", type=float, default=0.08)
    p.add_argument("--max-brightness", type=float, default=0.92)
    p.add_argument("--min-motion", type=float, default=0.0005)
    p.add_argument("--cut-threshold", type=float, default=0.3)
    p.add_argument("--duplicate-distance", type=float, default=0.04)
    p.add_argument("--max-frames", type=int, help="decode at most this many frames per video")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("cache", help="decode once into a memory-mapped uint8 clip cache")
    p.add_argument("path", help="ucf101:DIR, folder:DIR or DIR")
    p.add_argument("--out", required=True, help="cache folder (clips.npy + index.json)")
    p.add_argument("--split", default="train", choices=["train", "test"], help="UCF-101 split")
    p.add_argument("--fold", type=int, default=1)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--clips-per-video", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bench", action="store_true", help="also measure decode vs cached clips/s")
    p.add_argument("--bench-n", type=int, default=32, help="clips read per benchmark")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def parse_groups(text: str | None) -> list[int] | None:
    """``"1,8"`` -> [1, 8]; ``"1-3,8"`` -> [1, 2, 3, 8]; None -> None."""
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            lo, _, hi = part.partition("-")
            out += list(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(f"--groups {text!r}: expected group numbers like 1,8 or 1-7") from None
    return out


def parse_source(spec: str) -> tuple[str, Path]:
    """``ucf101:DIR`` / ``folder:DIR`` / ``DIR`` -> (kind, path); a plain DIR is UCF-101
    when it (or its parent) holds ``ucfTrainTestlist/classInd.txt``."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("ucf101", "folder"):
        return kind, Path(rest)
    path = Path(spec)
    for base in (path, path.parent):
        if (base / "ucfTrainTestlist" / "classInd.txt").is_file():
            return "ucf101", path
    return "folder", path


def open_dataset(kind: str, path: Path, split: str = "train", fold: int = 1, frames: int = 16,
                 size: int = 64, **kw):
    if kind == "ucf101":
        from .ucf101 import UCF101
        return UCF101(path, split=split, fold=fold, frames=frames, size=size, **kw)
    from .folder import VideoFolder
    return VideoFolder(path, frames=frames, size=size, **kw)


# --------------------------------------------------------------------------- actions
def run_export(args) -> int:
    from .export import export_ucf101

    summary = export_ucf101(args.out, frames=args.frames, size=args.size, classes=args.classes,
                            groups=parse_groups(args.groups),
                            clips_per_group=args.clips_per_group, fps=args.fps, seed=args.seed,
                            progress=not args.quiet, overwrite=args.overwrite)
    print(f"exported {summary['videos']} clips ({summary['written']} written) of "
          f"{len(summary['classes'])} classes, groups {summary['groups']} to {summary['root']}")
    print("split lists: " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()))
    return 0


def _counts_table(per_class: dict[str, dict[str, int]], splits: list[str]) -> str:
    width = max([len("class"), *map(len, per_class)])
    lines = [f"{'class':<{width}}  " + "  ".join(f"{s:>6}" for s in splits)]
    for name, c in per_class.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{c.get(s, 0):>6}" for s in splits))
    return "\n".join(lines)


def _shapes_counts(fold: int):
    from . import synthetic

    table = synthetic.clip_index_table()
    per_class = {n: {} for n in synthetic.CLASS_NAMES}
    per_group: dict[int, int] = {}
    totals = {}
    for split in ("train", "test"):
        idx = synthetic.split_indices(split, fold)
        totals[split] = len(idx)
        for i in idx:
            lab, g, _ = table[i]
            c = per_class[synthetic.CLASS_NAMES[lab]]
            c[split] = c.get(split, 0) + 1
            per_group[g] = per_group.get(g, 0) + 1
    return totals, per_class, per_group


def _real_counts(datasets: dict):
    per_class: dict[str, dict[str, int]] = {}
    per_group: dict[int, int] = {}
    totals = {}
    for split, ds in datasets.items():
        s = ds.summary()
        totals[split] = s["videos"]
        for name in ds.class_names:
            per_class.setdefault(name, {})
        for name, n in s["classes"].items():
            per_class.setdefault(name, {})[split] = n
        for g, n in s["groups"].items():
            per_group[g] = per_group.get(g, 0) + n
    return totals, per_class, per_group


def _pick_classes(names: list[str], spec: str | None) -> list[str]:
    if spec is None:
        return names
    if spec.strip().isdigit():
        return names[:int(spec)]
    wanted = [c.strip() for c in spec.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise ValueError(f"--classes: unknown class(es) {unknown}; classes are e.g. {names[:3]}")
    return wanted


def _class_clips(args, kind: str, datasets: dict, classes: list[str]) -> dict:
    """{class name: video batch (b, 3, t, h, w)} with up to ``args.clips`` clips each."""
    import torch

    out = {}
    if kind == "shapes":
        from . import synthetic
        table = synthetic.clip_index_table()
        train = synthetic.split_indices("train", args.fold)
        for name in classes:
            lab = synthetic.CLASS_NAMES.index(name)
            idx = [i for i in train if table[i][0] == lab][:args.clips]
            out[name] = synthetic.render_batch(idx, frames=args.frames, size=args.size)["video"]
        return out
    for name in classes:
        clips = []
        for ds in datasets.values():
            for i in range(len(ds)):
                if len(clips) >= args.clips:
                    break
                if ds.videos[i // ds.clips_per_video].class_name != name:
                    continue
                try:
                    clips.append(ds.item(i, ds.load_clip(i))["video"])
                except SKIP_ERRORS as e:  # inspect shows bad files instead of hiding them
                    print(f"  skipped {getattr(e, 'path', '')}: {getattr(e, 'reason', e)}")
        if clips:
            out[name] = torch.stack(clips)
    return out


def _contact_sheet(clips: dict, path: Path) -> None:
    """One middle frame per class in a grid, titled with the class names (matplotlib, no pyplot)."""
    from matplotlib.figure import Figure

    from viddiff_mini.viz import to_uint8

    n = len(clips)
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(1.6 * cols, 1.75 * rows))
    for k, (name, video) in enumerate(clips.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        frames = to_uint8(video[:1])[0].numpy()          # (t, h, w, 3)
        ax.imshow(frames[len(frames) // 2])
        ax.set_title(name, fontsize=6)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run_inspect(args) -> int:
    from viddiff_mini.config import parse_data_spec

    kind, path = parse_data_spec(args.data)
    if kind == "shapes":
        totals, per_class, per_group = _shapes_counts(args.fold)
        datasets = {}
        names = list(per_class)
    else:
        datasets = ({s: open_dataset(kind, Path(path), s, args.fold, args.frames, args.size,
                                     sampling="uniform") for s in ("train", "test")}
                    if kind == "ucf101" else
                    {"all": open_dataset(kind, Path(path), frames=args.frames, size=args.size,
                                         sampling="uniform")})
        totals, per_class, per_group = _real_counts(datasets)
        names = next(iter(datasets.values())).class_names
    splits = list(totals)
    fold = f", fold {args.fold}" if kind != "folder" else ""
    print(f"data {args.data}{fold}: " + ", ".join(f"{s} {n}" for s, n in totals.items())
          + f" clips, {len(per_class)} classes, {len(per_group)} groups")
    print(_counts_table(per_class, splits))
    print("per group: " + ", ".join(f"g{g:02d} {n}" for g, n in sorted(per_group.items())))
    if args.out is None:
        print("(pass --out DIR for a contact sheet and a GIF per class)")
        return 0
    from viddiff_mini.viz import save_gif

    out = Path(args.out)
    (out / "gifs").mkdir(parents=True, exist_ok=True)
    clips = _class_clips(args, kind, datasets, _pick_classes(names, args.classes))
    for name, video in clips.items():
        save_gif(video, out / "gifs" / f"{name or 'videos'}.gif", fps=8, scale=2)
    if clips:
        _contact_sheet(clips, out / "contact_sheet.png")
    (out / "counts.json").write_text(json.dumps(
        {"data": args.data, "totals": totals, "classes": per_class,
         "groups": {str(g): n for g, n in sorted(per_group.items())}}, indent=1))
    print(f"wrote {out / 'contact_sheet.png'}, {len(clips)} GIFs in {out / 'gifs'} and "
          f"{out / 'counts.json'}")
    return 0


def run_filter(args) -> int:
    from .quality import default_stages, filter_videos

    _, path = parse_source(args.path)  # every video file under the folder, whatever the layout
    stages = default_stages(min_frames=args.min_frames, min_brightness=args.min_brightness,
                            max_brightness=args.max_brightness, min_motion=args.min_motion,
                            cut_threshold=args.cut_threshold,
                            duplicate_distance=args.duplicate_distance)
    res = filter_videos(path, stages, report=args.report, max_frames=args.max_frames,
                        progress=not args.quiet)
    r = res.report
    print(f"kept {r['kept']} of {r['total']} videos; dropped " + ", ".join(
        f"{k} {v}" for k, v in r["dropped_by_stage"].items() if v) if r["dropped"] else
        f"kept all {r['total']} videos")
    print(f"report: {args.report}")
    return 0


def run_cache(args) -> int:
    from .cache import CachedClips, bench_cache, build_cache

    kind, path = parse_source(args.path)
    ds = open_dataset(kind, path, args.split, args.fold, args.frames, args.size,
                      clips_per_video=args.clips_per_video, seed=args.seed)
    index = build_cache(ds, args.out, progress=not args.quiet)
    print(f"cached {index['count']} clips {tuple(index['shape'][1:])} uint8 in {args.out}"
          + (f"; skipped {len(index['skipped'])} unreadable videos" if index["skipped"] else ""))
    if args.bench:
        b = bench_cache(ds, CachedClips(args.out), n=args.bench_n)
        print(f"decode {b['decode_clips_per_s']:.1f} clips/s, cached "
              f"{b['cached_clips_per_s']:.1f} clips/s ({b['speedup']:.0f}x) over {b['n']} clips")
    return 0


ACTIONS = {"export": run_export, "inspect": run_inspect, "filter": run_filter, "cache": run_cache}


def main(args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.action](args)
    except (ValueError, FileNotFoundError) as e:  # user errors: a message, no traceback
        print(f"viddiff data: {e}", file=sys.stderr)
        return 1
