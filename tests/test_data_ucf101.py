"""UCF101 on a real exported tree (XVID AVI + official split lists), including broken files."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch

from viddiff_mini.data import synthetic
from viddiff_mini.data.clips import to_uint8_frames
from viddiff_mini.data.export import export_ucf101
from viddiff_mini.data.ucf101 import UCF101
from viddiff_mini.data.video_io import probe_video, read_video, write_video

CLASSES = ["BounceCircle", "MoveLeftSquare", "SpinTriangle"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("ucf")
    summary = export_ucf101(root, frames=12, size=32, classes=CLASSES, groups=[1, 8],
                            progress=False)
    return root, summary


def _list(root, name):
    return (root / "ucfTrainTestlist" / name).read_text().splitlines()


def test_export_layout_and_lists(tree):
    root, summary = tree
    assert summary["classes"] == CLASSES and summary["groups"] == [1, 8]
    assert _list(root, "classInd.txt") == ["1 BounceCircle", "2 MoveLeftSquare", "3 SpinTriangle"]
    train, test = _list(root, "trainlist01.txt"), _list(root, "testlist01.txt")
    assert len(train) + len(test) == summary["videos"] == len(list(root.glob("UCF-101/*/*.avi")))
    assert train[0] == "BounceCircle/v_BounceCircle_g08_c01.avi 1"       # 1-based label
    assert test[0] == "BounceCircle/v_BounceCircle_g01_c01.avi"          # no label
    assert all("_g01_" in r for r in test) and all("_g08_" in r for r in train)
    info = probe_video(root / "UCF-101" / test[0])
    assert (info.frames, info.width, info.fps) == (12, 32, 25.0)
    # the file holds the rendered clip (up to codec loss)
    lab = synthetic.CLASS_NAMES.index("BounceCircle")
    i = next(i for i, r in enumerate(synthetic.clip_index_table()) if r[:2] == (lab, 1))
    want = to_uint8_frames(synthetic.render_batch([i], frames=12, size=32)["video"][0])
    got = read_video(root / "UCF-101" / test[0])
    assert np.abs(got.astype(int) - want).mean() < 4
    again = export_ucf101(root, frames=12, size=32, classes=CLASSES, groups=[1, 8], progress=False)
    assert again["written"] == 0                                          # resumable: kept files


@pytest.mark.parametrize("split,fold", [("train", 1), ("test", 1), ("train", 2), ("test", 2)])
def test_counts_labels_groups_captions(tree, split, fold):
    root, _ = tree
    ds = UCF101(root, split=split, fold=fold, frames=8, size=24)
    rows = _list(root, f"{split}list0{fold}.txt")
    assert len(ds) == len(rows) and ds.num_classes == 3 and ds.classes == CLASSES
    want_group = {("train", 1): 8, ("test", 1): 1, ("train", 2): 1, ("test", 2): 8}[split, fold]
    for i in range(0, len(ds), 3):
        item = ds[i]
        cls = rows[i].split("/")[0]
        assert item["class_name"] == cls and item["label"] == CLASSES.index(cls)
        assert ds.label_of(i) == item["label"]
        assert item["group"] == want_group
        assert item["caption"] == {"BounceCircle": "bounce circle", "MoveLeftSquare":
                                   "move left square", "SpinTriangle": "spin triangle"}[cls]
        assert item["video"].shape == (3, 8, 24, 24) and item["video"].dtype == torch.float32
        assert -1 <= item["video"].min() < item["video"].max() <= 1
    assert ds.skipped == []


def test_root_may_be_the_class_folder_and_clips_per_video(tree):
    root, _ = tree
    a = UCF101(root, split="test", frames=4, size=16, clips_per_video=3)
    b = UCF101(root / "UCF-101", split="test", frames=4, size=16, clips_per_video=3)
    assert len(a) == len(b) == 3 * len(_list(root, "testlist01.txt"))
    assert [a.label_of(i) for i in range(len(a))] == [b.label_of(i) for i in range(len(b))]
    assert a.label_of(0) == a.label_of(2) != a.label_of(len(a) - 1)
    # uniform sampling (test default): 3 different windows of the same 12-frame video
    x0, x1 = a[0]["video"], a[1]["video"]
    assert a[0]["path"] == a[1]["path"] and not torch.equal(x0, x1)
    assert torch.equal(x0, b[0]["video"])


def test_random_sampling_is_seeded(tree):
    root, _ = tree
    a = UCF101(root, split="train", frames=4, size=16, seed=3)
    b = UCF101(root, split="train", frames=4, size=16, seed=3)
    assert all(torch.equal(a[i]["video"], b[i]["video"]) for i in range(4))
    starts = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        starts.add(a[0]["video"].sum().item())
    assert len(starts) > 1                                # new windows in new epochs


@pytest.fixture
def damaged(tree, tmp_path):
    """A copy of the tree with a garbage file, a truncated file and a 3-frame video."""
    root, _ = tree
    shutil.copytree(root, tmp_path / "d")
    root = tmp_path / "d"
    rows = [r.split()[0] for r in _list(root, "trainlist01.txt")]
    bad = {rows[1]: "garbage", rows[4]: "truncated", rows[7]: "short"}
    for rel, kind in bad.items():
        p = root / "UCF-101" / rel
        if kind == "garbage":
            p.write_bytes(np.random.default_rng(0).bytes(3000))
        elif kind == "truncated":
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        else:
            write_video(p, read_video(p)[:3])
    return root, rows, bad


def test_bad_videos_are_skipped_counted_and_warned_once(damaged):
    root, rows, bad = damaged
    ds = UCF101(root, split="train", frames=8, size=16, short="skip")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=synthetic.collate_clips)
        batches = list(loader)                                        # a whole epoch: no crash
        list(loader)                                                  # and a second one
    assert sum(len(b["label"]) for b in batches) == len(ds) == len(rows)
    assert len([w for w in caught if "skipping unreadable video" in str(w.message)]) == 1
    assert sorted(p for p, _ in ds.skipped) == sorted(str(root / "UCF-101" / r) for r in bad)
    reasons = {p.split("/")[-1]: r for p, r in ds.skipped}
    assert "too short" in reasons[rows[7].split("/")[1]]
    assert all(r for r in reasons.values())
    assert len(ds.skipped) == 3                                       # each file listed once
    # a bad item is replaced by the next good clip, the same way every time
    assert ds[1]["path"] == ds[2]["path"] == str(root / "UCF-101" / rows[2])
    assert torch.equal(ds[1]["video"], ds[2]["video"])
    # label_of reads the list, not the file: bad videos keep their listed label
    assert [ds.label_of(i) for i in range(len(ds))] == [CLASSES.index(r.split("/")[0])
                                                         for r in rows]


def test_short_videos_loop_or_pad_by_default(damaged):
    root, rows, _ = damaged
    for short in ("loop", "pad"):
        ds = UCF101(root, split="train", frames=8, size=16, short=short)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            item = ds[7]
        assert item["path"].endswith(rows[7]) and item["video"].shape == (3, 8, 16, 16)
        v = item["video"]
        if short == "pad":
            assert torch.equal(v[:, 3], v[:, 7])                  # the last frame is held
        else:
            assert torch.equal(v[:, 0], v[:, 3])                  # frame 3 = frame 0 again


def test_missing_or_malformed_layout_errors(tree, tmp_path):
    root, _ = tree
    shutil.copytree(root / "ucfTrainTestlist", tmp_path / "ucfTrainTestlist")
    lists = tmp_path / "ucfTrainTestlist"
    with pytest.raises(FileNotFoundError, match=r"none of the .* videos listed"):
        UCF101(tmp_path, split="train")                       # lists but no videos
    shutil.copytree(root / "UCF-101", tmp_path / "UCF-101")
    (lists / "testlist02.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"testlist02\.txt: split file missing"):
        UCF101(tmp_path, split="test", fold=2)
    with open(lists / "trainlist01.txt", "a") as f:
        f.write("Juggling/v_Juggling_g08_c01.avi 4\n")
    n = len(_list(tmp_path, "trainlist01.txt"))
    with pytest.raises(ValueError, match=rf"trainlist01\.txt line {n}: class 'Juggling'"):
        UCF101(tmp_path, split="train")
    (lists / "trainlist02.txt").write_text("BounceCircle/v_BounceCircle_g01_c01.avi 3\n")
    with pytest.raises(ValueError, match="disagrees with classInd"):
        UCF101(tmp_path, split="train", fold=2)
    with pytest.raises(ValueError, match="lists no videos"):
        UCF101(tmp_path, split="test", fold=3)                # groups 15-21 were not exported
    (lists / "classInd.txt").unlink()
    with pytest.raises(FileNotFoundError, match="classInd.txt: missing"):
        UCF101(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="classInd"):
        UCF101(empty)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        UCF101(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="fold"):
        UCF101(root, fold=4)


def test_training_on_exported_avis_draws_a_new_window_each_step(tree, tmp_path):
    """`viddiff train --data ucf101:DIR` reads the real files, and the random clip window is a
    function of the training step (a video visited twice gives two windows)."""
    from viddiff_mini.config import get_preset
    from viddiff_mini.train import _StepWindows, train

    root, _ = tree
    ds = UCF101(root, split="train", fold=1, frames=4, size=32, seed=0)
    windows = _StepWindows(ds)
    a, b = windows[(0, 1)]["video"], windows[(0, 2)]["video"]
    again = windows[(0, 1)]["video"]
    assert torch.equal(a, again)  # a pure function of (index, step)
    assert not torch.equal(a, b)  # 12-frame video, 4-frame clip: another start frame

    cfg = get_preset("tiny", data=f"ucf101:{root}", num_classes=2, max_steps=3, frames=4,
                     size=16, ckpt_every=3, log_every=1, sample_n=2, sample_steps=2)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 3 and (tmp_path / "run" / "checkpoint.pt").is_file()
