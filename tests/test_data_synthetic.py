"""MovingShapes-101: UCF-101's bookkeeping, determinism and exact ground-truth flow."""

from __future__ import annotations

import re
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from viddiff_mini.data import synthetic as S


def test_counts_match_ucf101():
    table = S.clip_index_table()
    assert len(table) == S.NUM_CLIPS == 13320
    assert len(S.CLASS_NAMES) == S.NUM_CLASSES == 101 == len(set(S.CLASS_NAMES))
    assert S.CLASS_NAMES == sorted(S.CLASS_NAMES)  # like classInd.txt
    assert {g for _, g, _ in table} == set(range(1, 26))
    cells = Counter((lab, g) for lab, g, _ in table)
    assert len(cells) == 101 * 25
    assert set(cells.values()) <= {4, 5, 6, 7}
    # clips of a cell are numbered 1..n, class-major order (like UCF-101's file list)
    for (lab, g), n in list(cells.items())[:50]:
        assert sorted(k for la, gg, k in table if (la, gg) == (lab, g)) == list(range(1, n + 1))
    assert [lab for lab, _, _ in table] == sorted(lab for lab, _, _ in table)
    lines = S.class_index_text().splitlines()
    assert len(lines) == 101 and lines[0] == f"1 {S.CLASS_NAMES[0]}"


@pytest.mark.parametrize("fold,groups", [(1, range(1, 8)), (2, range(8, 15)), (3, range(15, 22))])
def test_splits_are_disjoint_by_group(fold, groups):
    table = S.clip_index_table()
    train, test = S.split_indices("train", fold), S.split_indices("test", fold)
    assert not set(train) & set(test)
    assert len(train) + len(test) == S.NUM_CLIPS
    assert {table[i][1] for i in test} == set(groups)
    assert not {table[i][1] for i in train} & set(groups)
    assert {table[i][0] for i in test} == set(range(101))  # every class in every test split


def test_bad_split_arguments_are_named():
    with pytest.raises(ValueError, match="fold"):
        S.split_indices("train", 4)
    with pytest.raises(ValueError, match="split"):
        S.MovingShapes101("val")
    with pytest.raises(ValueError, match="index"):
        S.render_batch([S.NUM_CLIPS])
    with pytest.raises(ValueError, match="frames"):
        S.render_batch([0], frames=1)


def test_render_is_deterministic_whatever_the_order_or_batching():
    idx = [7, 4000, 13319, 250]
    kw = dict(frames=6, size=24, truth=True)
    a = S.render_batch(idx, **kw)
    b = S.render_batch(idx[::-1], chunk=1, **kw)          # reversed, one clip per chunk
    c = S.render_batch([idx[2]], **kw)                     # alone
    S.render_batch([1, 2, 3], **kw)                        # unrelated work in between
    d = S.render_batch(idx, **kw)
    for key in ("video", "flow", "masks", "camera", "light"):
        assert torch.equal(a[key], b[key].flip(0)), key
        assert torch.equal(a[key], d[key]), key
        assert torch.equal(a[key][2:3], c[key]), key
    assert a["caption"] == d["caption"] and a["caption"][2] == c["caption"][0]
    assert not torch.equal(a["video"], S.render_batch(idx, seed=1, **kw)["video"])


def _warp_error(video, flow, masks, use_flow=True):
    """Mean |frame_t(p) - frame_{t+1}(p + flow_t(p))| over object-interior pixels p whose
    target is still on the object (so occlusion and anti-aliased edges do not count)."""
    _, T, H, W = video.shape
    ys, xs = torch.meshgrid(torch.arange(H).float(), torch.arange(W).float(), indexing="ij")
    errs = []
    for t in range(T - 1):
        m = masks[:, t].any(0)
        inner = m.clone()
        inner[1:] &= m[:-1]
        inner[:-1] &= m[1:]
        inner[:, 1:] &= m[:, :-1]
        inner[:, :-1] &= m[:, 1:]
        f = flow[:, t] if use_flow else torch.zeros_like(flow[:, t])
        qx, qy = xs + f[0], ys + f[1]
        grid = torch.stack([(qx + 0.5) / W * 2 - 1, (qy + 0.5) / H * 2 - 1], -1)[None]
        warped = F.grid_sample(video[None, :, t + 1], grid, mode="bilinear",
                               align_corners=False)[0]
        qi, qj = qy.round().long().clamp(0, H - 1), qx.round().long().clamp(0, W - 1)
        ok = inner & masks[:, t + 1].any(0)[qi, qj]
        if ok.sum() > 0:
            errs.append((warped - video[:, t]).abs()[:, ok].mean())
    return float(torch.stack(errs).mean()) if errs else float("nan")


def test_ground_truth_flow_warps_objects_onto_the_next_frame():
    names = ["MoveLeftCircle", "OrbitSquare", "SpinSquare", "BounceCircle", "ApproachCircle",
             "RollCircle", "CollideCircleSquare", "ThrowTriangle", "PanLeftCircle"]
    table = S.clip_index_table()
    idx = [next(i for i, r in enumerate(table) if r[0] == S.CLASS_NAMES.index(n)) for n in names]
    b = S.render_batch(idx, frames=8, size=48, truth=True)
    assert b["flow"].shape == (len(idx), 2, 7, 48, 48)
    for name, v, fl, m in zip(names, b["video"], b["flow"], b["masks"]):
        err = _warp_error(v, fl, m)
        assert err < 0.02, (name, err)                        # values span [-1, 1]
        still = _warp_error(v, fl, m, use_flow=False)
        assert not still < 2 * err, (name, err, still)        # the flow explains the motion


def test_camera_pan_flow_moves_the_background():
    lab = S.CLASS_NAMES.index("PanRightSquare")
    i = next(i for i, r in enumerate(S.clip_index_table()) if r[0] == lab)
    b = S.render_batch([i], frames=6, size=48, truth=True)
    v, fl = b["video"][0], b["flow"][0]
    assert fl.abs().amax() > 0.3 and b["camera"][0].abs().amax() > 0
    everywhere = torch.ones(1, 6, 48, 48, dtype=torch.bool)
    everywhere[:, :, :, :6] = everywhere[:, :, :, -6:] = False   # targets stay in the frame
    assert _warp_error(v, fl, everywhere) < 0.03


def test_virtual_pans_move_the_camera_and_keep_the_objects_own_motion():
    from viddiff_mini.control.animate import measure_motion, motion_from_truth
    idx = [S.find_clip("MoveRightSquare", split="test"), S.find_clip("SpinSquare", split="test")]
    plain = S.render_batch(idx, frames=12, size=32, truth=True)
    panned = S.render_batch(idx, frames=12, size=32, truth=True, pans=[[0.3, 0.0], [0.0, 0.0]])
    assert torch.equal(plain["video"][1], panned["video"][1]), "a zero pan changes nothing"
    assert panned["caption"] == plain["caption"]
    cam0, obj0 = motion_from_truth(plain)
    cam1, obj1 = motion_from_truth(panned)
    # 0.3 frame widths over 11 frame steps: the background moves left 0.3 * 32 / 11 px/frame
    assert cam1[0].tolist() == pytest.approx([-0.3 * 32 / 11, 0.0], abs=1e-4)
    torch.testing.assert_close(obj1, obj0)        # the object's own (world) motion is kept
    # and the pixels say the same: flow splits into the pan and the object's motion
    got = measure_motion(panned["video"][0], panned["masks"][0, :1])
    assert got["camera"][0] == pytest.approx(-0.3 * 32 / 11, abs=0.1)
    assert got["object"][0] == pytest.approx(float(obj0[0, 0]), abs=0.1)
    with pytest.raises(ValueError, match=r"pans: expected .* shape \(2, 2\)"):
        S.render_batch(idx, frames=12, size=32, pans=[[0.3, 0.0]])


def test_virtual_pan_copies_are_fixed_and_alternate_left_and_right():
    assert S.virtual_pan(5, 0) == (0.0, 0.0)
    left, right = S.virtual_pan(5, 1), S.virtual_pan(5, 2)
    assert -0.32 <= left[0] <= -0.22 and 0.22 <= right[0] <= 0.32 and left[1] == right[1] == 0
    assert S.virtual_pan(5, 1) == left and S.virtual_pan(6, 1) != left
    assert S.virtual_pan(5, 1, seed=1) != left


def test_virtual_moves_slow_and_move_a_straight_path_inside_the_frame():
    from viddiff_mini.control.animate import motion_from_truth
    movers = [S.find_clip(c, split="test") for c in
              ("MoveRightSquare", "MoveLeftFastCircle", "MoveUpTriangle", "SlideDiagonalSquare")]
    plain = S.render_batch(movers, frames=16, size=32, truth=True)
    _, v0 = motion_from_truth(plain)
    corners = [(0.0, 0.0, 0.0), (1 - 1e-9, 1 - 1e-9, 1 - 1e-9), (0.5, 0.2, 0.8), (0.3, 0.9, 0.1)]
    for u in corners:
        moved = S.render_batch(movers, frames=16, size=32, truth=True, moves=[u] * 4)
        _, v1 = motion_from_truth(moved)
        # the speed is scaled by 0.3 + 0.7 u[0], the direction kept
        torch.testing.assert_close(v1, v0 * (0.3 + 0.7 * u[0]), atol=1e-3, rtol=1e-3)
        # the whole object stays inside the frame on every frame: never on its border
        m = moved["masks"][:, 0]                                      # (b, t, h, w)
        assert m.flatten(2).any(-1).all(), "the object is visible on every frame"
        for border in (m[..., 0, :], m[..., -1, :], m[..., :, 0], m[..., :, -1]):
            assert not border.any(), u
        assert moved["caption"] == plain["caption"]
        assert moved["physics"][0]["vx"] == pytest.approx(plain["physics"][0]["vx"] * (0.3 + 0.7 * u[0]))
    # u[1:] spans the allowed starts: the far corners put a rightward square at both sides
    lo = S.render_batch(movers[:1], frames=16, size=32, truth=True, moves=[(0.0, 0.0, 0.5)])
    hi = S.render_batch(movers[:1], frames=16, size=32, truth=True, moves=[(0.0, 1 - 1e-9, 0.5)])
    start_lo, start_hi = lo["trajectories"][0, 0, 0, 0], hi["trajectories"][0, 0, 0, 0]
    plain_x = plain["trajectories"][0, 0, 0, 0]
    assert start_lo < 6 and start_hi > 22 and start_lo < plain_x < start_hi
    # clips without one straight path are left alone, and moves=None changes nothing
    others = [S.find_clip(c, split="test") for c in ("BounceSquare", "PanLeftSquare", "OrbitSquare")]
    a = S.render_batch(others, frames=8, size=32)
    b = S.render_batch(others, frames=8, size=32, moves=[(0.1, 0.9, 0.5)] * 3)
    assert torch.equal(a["video"], b["video"])
    c = S.render_batch(movers, frames=16, size=32, moves=[None] * 4)
    assert torch.equal(c["video"], plain["video"])
    with pytest.raises(ValueError, match="moves: expected one entry per clip"):
        S.render_batch(movers, frames=8, size=32, moves=[None])


def test_straight_path_classes_are_the_movable_scenes():
    """The pool's rule (train: which classes get move copies) and relocate's rule (movable:
    which scenes it moves) agree: every test clip of a straight-path class is movable and
    no clip of another class is."""
    straight = S.straight_path_classes()
    def stem(name):
        return re.sub("(Square|Circle|Triangle|Diamond|Hexagon)$", "", name)

    assert {stem(S.CLASS_NAMES[c]) for c in straight} == \
        {"MoveLeft", "MoveRight", "MoveUp", "MoveDown", "MoveLeftFast", "MoveRightFast",
         "SlideDiagonal"}
    for label in range(S.NUM_CLASSES):
        index = S.find_clip(label, split="test")
        assert S.movable(S.make_scene(index)[0]) == (label in straight), S.CLASS_NAMES[label]


def test_virtual_move_draws_are_fixed_per_copy():
    assert S.virtual_move(5, 0) is None
    u = S.virtual_move(5, 1)
    assert len(u) == 3 and all(0 <= x < 1 for x in u)
    assert S.virtual_move(5, 1) == u and S.virtual_move(5, 2) != u and S.virtual_move(6, 1) != u
    assert S.virtual_move(5, 1, seed=1) != u


def test_dataset_items_keys_and_shapes():
    ds = S.MovingShapes101("test", fold=2, frames=6, size=24, classes=["BounceCircle", 3])
    assert len(ds) > 0 and all(S.clip_index_table()[i][0] in {S.CLASS_NAMES.index("BounceCircle"), 3}
                               for i in ds.indices)
    item = ds[0]
    assert item["video"].shape == (3, 6, 24, 24) and item["video"].dtype == torch.float32
    assert -1 <= item["video"].min() and item["video"].max() <= 1
    assert item["trajectories"].shape == (2, 6, 2)
    assert item["masks"].shape == (2, 6, 24, 24) and item["masks"].dtype == torch.bool
    assert item["flow"].shape == (2, 5, 24, 24)
    assert item["camera"].shape == (6, 2) and item["light"].shape == (6,)
    assert isinstance(item["label"], int) and item["class_name"] == S.CLASS_NAMES[item["label"]]
    assert 8 <= item["group"] <= 14  # fold 2 tests groups 8-14
    assert isinstance(item["caption"], str) and item["caption"]
    assert all(0 <= a <= b < 6 for _, a, b in item["action_spans"])
    batch = S.collate_clips([ds[0], ds[1]])
    assert batch["video"].shape == (2, 3, 6, 24, 24) and batch["label"].dtype == torch.long
    assert isinstance(batch["group"], list) and isinstance(batch["caption"], list)
    plain = S.MovingShapes101("train", frames=4, size=16, truth=False)[0]
    assert set(plain) == {"video", "label", "class_name", "group"}
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_find_clip_by_class_split_and_group():
    table = S.clip_index_table()
    label = S.CLASS_NAMES.index("BounceCircle")
    i = S.find_clip("BounceCircle", split="test")
    assert table[i][0] == label and i in set(S.split_indices("test", 1))
    assert i == S.MovingShapes101("test", classes=["BounceCircle"]).indices[0]
    j = S.find_clip(label, k=2, group=14)
    assert table[j][:2] == (label, 14) and j == S.find_clip("BounceCircle", 2, group=14)
    assert S.find_clip(label, k=-1) == max(n for n, r in enumerate(table) if r[0] == label)
    with pytest.raises(ValueError, match="'BounceCircle' has 0 clips in test split of fold 1, "
                                         "group 14"):
        S.find_clip("BounceCircle", split="test", group=14)  # group 14 trains in fold 1
    with pytest.raises(ValueError, match="cls: expected a class name"):
        S.find_clip("NoSuchClass")
    with pytest.raises(ValueError, match="group: expected 1..25"):
        S.find_clip(0, group=26)


def test_class_ids_of_maps_names_and_refuses_unknown_ones_by_name():
    from viddiff_mini.data.synthetic import CLASS_NAMES, class_ids_of

    assert class_ids_of(["BounceSquare", "ApproachCircle"]) == [
        CLASS_NAMES.index("BounceSquare"), 0]
    with pytest.raises(ValueError, match=r"--classes: unknown class name\(s\) \['Nope'\]"):
        class_ids_of(["BounceSquare", "Nope"], "--classes")
