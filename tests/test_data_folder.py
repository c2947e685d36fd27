"""VideoFolder: any folder of videos, labels from sub-folders, captions from CSV / JSONL."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from viddiff_mini.data.clips import to_uint8_frames
from viddiff_mini.data.folder import VideoFolder, read_captions
from viddiff_mini.data.synthetic import render_batch
from viddiff_mini.data.video_io import write_video

FILES = ["cats/a.mp4", "cats/more/b.mov", "dogs/c.avi", "dogs/d.gif", "dogs/v_Dogs_g03_c02.avi"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    clips = to_uint8_frames(render_batch(list(range(0, 5 * 300, 300)), frames=10, size=24)["video"])
    for rel, clip in zip(FILES, clips):
        write_video(root / rel, clip, fps=10)
    (root / "notes.txt").write_text("not a video")
    return root


def test_labels_from_sorted_subfolders_recursively(folder):
    ds = VideoFolder(folder, frames=6, size=16)
    assert ds.class_names == ["cats", "dogs"] and len(ds) == 5
    assert [v.path for v in ds.videos] == [str(folder / f) for f in FILES]
    assert [ds.label_of(i) for i in range(5)] == [0, 0, 1, 1, 1]
    item = ds[3]                                              # a GIF
    assert item["video"].shape == (3, 6, 16, 16) and -1 <= item["video"].min()
    assert item["label"] == 1 and item["class_name"] == "dogs" and item["caption"] == "dogs"
    assert ds[4]["group"] == 3 and ds[0]["group"] == 0        # UCF-style names give a group
    assert ds.skipped == []


def test_captions_csv_and_jsonl(folder, tmp_path):
    csv_path = tmp_path / "captions.csv"
    csv_path.write_text('path,caption\ncats/a.mp4,"a cat jumps, then lands"\n'
                        f"{folder / 'dogs/c.avi'},a dog runs\n")   # relative and absolute paths
    ds = VideoFolder(folder, captions=csv_path, frames=4, size=16)
    assert ds[0]["caption"] == "a cat jumps, then lands"
    assert ds[2]["caption"] == "a dog runs"
    assert ds[1]["caption"] == "cats"                          # no caption: the class in words
    jsonl = tmp_path / "captions.jsonl"
    jsonl.write_text(json.dumps({"path": "cats/more/b.mov", "caption": "a cat sleeps"}) + "\n\n")
    assert VideoFolder(folder, captions=jsonl, frames=4, size=16)[1]["caption"] == "a cat sleeps"
    assert VideoFolder(folder, captions={"dogs/d.gif": "gif dog"}, frames=4,
                       size=16).videos[3].caption == "gif dog"
    other = tmp_path / "other.csv"
    other.write_text("elsewhere/x.mp4,lost\n")
    with pytest.warns(UserWarning, match="1 captions name videos not found"):
        VideoFolder(folder, captions=other)


def test_malformed_captions_name_the_line(tmp_path, folder):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("path,caption\ncats/a.mp4,ok\ncats/b.mp4,one,two\n")
    with pytest.raises(ValueError, match=r"bad\.csv line 3: expected 2 fields"):
        read_captions(bad_csv)
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"path": "a.mp4", "caption": "x"}\n{"path": "b.mp4", caption}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl line 2: not valid JSON"):
        VideoFolder(folder, captions=bad_json)
    no_key = tmp_path / "nokey.jsonl"
    no_key.write_text('{"file": "a.mp4", "caption": "x"}\n')
    with pytest.raises(ValueError, match=r"nokey\.jsonl line 1: .*\"path\" and \"caption\""):
        read_captions(no_key)
    (tmp_path / "notes.txt").write_text("a.mp4,x\n")
    with pytest.raises(ValueError, match="unknown captions format"):
        read_captions(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="captions file not found"):
        read_captions(tmp_path / "missing.csv")


def test_flat_mixed_empty_and_corrupt_folders(tmp_path):
    clip = to_uint8_frames(render_batch([5], frames=8, size=16)["video"][0])
    flat = tmp_path / "flat"
    write_video(flat / "one.mp4", clip)
    write_video(flat / "two.avi", clip)
    (flat / "three.webm").write_bytes(b"\x1aE\xdf\xa3 broken")           # corrupt
    ds = VideoFolder(flat, frames=4, size=16)
    assert ds.class_names == [""] and [ds.label_of(i) for i in range(3)] == [0, 0, 0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [ds[i] for i in range(len(ds))]
    assert len(items) == 3 and all(it["video"].shape == (3, 4, 16, 16) for it in items)
    assert [p for p, _ in ds.skipped] == [str(flat / "three.webm")]
    assert len(caught) == 1 and "three.webm" in str(caught[0].message)
    assert items[1]["path"] == str(flat / "two.avi")        # three.webm -> next good (wraps)
    assert torch.equal(items[1]["video"], ds[1]["video"])

    write_video(flat / "sub" / "x.mp4", clip)
    with pytest.raises(ValueError, match="labels='none'"):
        VideoFolder(flat)
    assert len(VideoFolder(flat, labels="none")) == 4
    assert VideoFolder(flat, labels="folders").class_names == [".", "sub"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no videos found"):
        VideoFolder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        VideoFolder(tmp_path / "missing")
