"""Quality filter (each stage and the folder pipeline) and the uint8 memory-mapped cache."""

from __future__ import annotations

import csv
import io
import json
import pickle

import numpy as np
import pytest
import torch

from viddiff_mini.data import quality, synthetic
from viddiff_mini.data.cache import CachedClips, bench_cache, build_cache
from viddiff_mini.data.clips import to_uint8_frames
from viddiff_mini.data.folder import VideoFolder
from viddiff_mini.data.video_io import write_video

GOOD = [("MoveLeftCircle", 1), ("BounceSquare", 5), ("OrbitTriangle", 10), ("ZigZagCircle", 20)]


def _index(name: str, group: int) -> int:
    lab = synthetic.CLASS_NAMES.index(name)
    return next(i for i, r in enumerate(synthetic.clip_index_table()) if r[:2] == (lab, group))


@pytest.fixture(scope="module")
def good() -> np.ndarray:
    """Four ordinary clips, uint8 (4, 16, 64, 64, 3)."""
    video = synthetic.render_batch([_index(*g) for g in GOOD], frames=16, size=64)["video"]
    return to_uint8_frames(video)


def test_each_stage_on_its_own(good):
    clip = good[0]
    assert all(stage(clip) is None for stage in (quality.too_short, quality.too_dark,
                                                 quality.too_bright, quality.static,
                                                 quality.scene_cuts))
    assert "too short: 8 frames < 16" in quality.too_short(clip[:8])
    assert quality.too_short(clip[:8], min_frames=8) is None               # thresholds are args
    assert quality.too_dark(clip // 8).startswith("too dark")
    assert quality.too_bright(255 - clip // 8).startswith("too bright")
    assert quality.static(np.repeat(clip[:1], 16, axis=0)).startswith("static")
    cut = np.concatenate([good[1][:8], good[2][8:]])
    assert quality.scene_cuts(cut).startswith("scene cut: 1 cut(s) at frame 8")
    assert quality.scene_cuts(cut, max_cuts=1) is None
    flash = (clip.astype(np.float32) * np.linspace(1, 0.5, 16)[:, None, None, None]).astype(np.uint8)
    assert quality.scene_cuts(flash) is None                   # a fade is not a cut
    # float clips (c, t, h, w) in [-1, 1] are accepted too
    assert quality.too_dark(torch.full((3, 16, 8, 8), -0.95)).startswith("too dark")
    dup = quality.NearDuplicates()
    assert dup(good[0], name="a") is None and dup(good[1], name="b") is None
    assert dup(good[0].copy(), name="c").startswith("near-duplicate of a")


@pytest.fixture(scope="module")
def messy(tmp_path_factory, good):
    """A folder: 4 good videos, a dark, a static, a re-encoded duplicate and a garbage file."""
    root = tmp_path_factory.mktemp("messy")
    for k, clip in enumerate(good):
        write_video(root / f"good{k}.avi", clip)
    write_video(root / "dark.avi", good[1] // 10)
    write_video(root / "static.avi", np.repeat(good[2][5:6], 16, axis=0))
    write_video(root / "zz_copy.mp4", good[3])                 # same clip, other codec
    (root / "broken.avi").write_bytes(np.random.default_rng(1).bytes(5000))
    return root


def test_filter_folder_drops_with_reasons_and_writes_reports(messy, good, tmp_path):
    res = quality.filter_videos(messy, report=tmp_path / "r.json")
    dropped = {d["path"].split("/")[-1]: d for d in res.dropped}
    assert set(dropped) == {"dark.avi", "static.avi", "zz_copy.mp4", "broken.avi"}
    assert dropped["dark.avi"]["stage"] == "too_dark"
    assert dropped["static.avi"]["stage"] == "static"
    assert dropped["zz_copy.mp4"]["stage"] == "near_duplicate"
    assert "good3.avi" in dropped["zz_copy.mp4"]["reason"]
    assert dropped["broken.avi"]["stage"] == "corrupt" and dropped["broken.avi"]["reason"]
    assert sorted(p.split("/")[-1] for p in res.kept) == [f"good{k}.avi" for k in range(4)]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["total"] == 8 and report["kept"] == 4
    assert report["dropped_by_stage"] == {"corrupt": 1, "too_short": 0, "too_dark": 1,
                                          "too_bright": 0, "static": 1, "scene_cut": 0,
                                          "near_duplicate": 1}
    assert report["thresholds"]["too_dark"] == {"min_brightness": 0.08}
    res.write(tmp_path / "r.csv")
    rows = list(csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"kept", "dropped"}
    # the same pipeline over a data set of the folder, and over clips in memory
    assert len(quality.filter_videos(VideoFolder(messy)).kept) == 4
    mem = quality.filter_videos({"x": good[0], "y": good[0] // 10})
    assert mem.kept == ["x"] and mem.dropped[0]["stage"] == "too_dark"


def test_cache_round_trip_equals_decoded_and_is_faster(messy, tmp_path):
    with pytest.warns(UserWarning, match="broken.avi"):  # the data set skips it while caching
        ds = VideoFolder(messy, frames=8, size=24, sampling="uniform")
        index = build_cache(ds, tmp_path / "cache", progress=False)
        ds[0]
    assert index["count"] == len(ds) - 1 == 7
    assert [p.split("/")[-1] for p, _ in index["skipped"]] == ["broken.avi"]
    cache = CachedClips(tmp_path / "cache")
    assert len(cache) == 7 and cache.clips.shape == (7, 8, 24, 24, 3)
    assert cache.clips.dtype == np.uint8 and isinstance(cache.clips, np.memmap)
    assert cache.skipped and cache.skipped[0][0].endswith("broken.avi")
    paths = [v.path for v in ds.videos if not v.path.endswith("broken.avi")]
    for j, p in enumerate(paths):
        i = [v.path for v in ds.videos].index(p)
        a, b = ds[i], cache[j]
        assert set(a) == set(b)
        assert torch.equal(a["video"], b["video"])             # bit-identical
        assert (a["label"], a["path"], a["caption"]) == (b["label"], b["path"], b["caption"])
        assert cache.label_of(j) == a["label"]
    clone = pickle.loads(pickle.dumps(cache))                  # DataLoader workers
    assert torch.equal(clone[0]["video"], cache[0]["video"])
    speed = bench_cache(ds, cache, n=7)
    assert speed["cached_clips_per_s"] > 2 * speed["decode_clips_per_s"]
    assert speed["speedup"] > 2


def test_cache_from_synthetic_and_incomplete_cache(tmp_path):
    ms = synthetic.MovingShapes101("test", frames=4, size=16, classes=[0], truth=False)
    index = build_cache(ms, tmp_path / "c", progress=False)
    cache = CachedClips(tmp_path / "c")
    assert len(cache) == len(ms) == index["count"]
    assert torch.allclose(cache[3]["video"], ms[3]["video"], atol=1 / 127.5)
    assert cache[3]["label"] == 0 and cache[3]["class_name"] == synthetic.CLASS_NAMES[0]
    (tmp_path / "c" / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match="index.json: missing"):
        CachedClips(tmp_path / "c")
    with pytest.raises(ValueError, match="source"):
        build_cache(42, tmp_path / "d")
