"""control/compose.py: any subset of controls -> one cond dict, keep masks, per-control
guidance, conflicts, and the `viddiff train --conditions ...` path end to end."""

from __future__ import annotations

import json

import pytest
import torch

from viddiff_mini.control import compose as C
from viddiff_mini.control.animate import MOTION_DIM
from viddiff_mini.control.attributes import attribute_dim, decode_attributes
from viddiff_mini.control.style import STYLE_DIM, style_code
from viddiff_mini.control.trajectory import bezier, render_discs
from viddiff_mini.data.synthetic import render_batch, split_indices
from viddiff_mini.diffusion import Diffusion
from viddiff_mini.models import build_model

ALL = list(C.CONDITIONS)
TINY = dict(base_channels=16, channel_mults=(1, 2), attn_levels=(1,), heads=2)


@pytest.fixture(scope="module")
def batch():
    return render_batch(split_indices("train")[::997][:4], frames=6, size=16, truth=True)


def _rightward(frames=6, y=8.0):
    return bezier([[2.0, y], [13.0, y]], frames)


def test_condition_names_and_model_kwargs():
    assert C.check_conditions("text, trajectory") == ["text", "trajectory"]
    assert C.check_conditions(["first_frame", "label"]) == ["label", "first_frame"], "canonical order"
    for bad, msg in ([], "at least one"), (["txt"], "unknown"), (["text", "text"], "more than once"):
        with pytest.raises(ValueError, match=msg):
            C.check_conditions(bad)
    kw = C.model_kwargs_for(ALL, 8, 16)
    assert kw == {"num_classes": 101, "context_dim": C.TEXT_DIM, "concat_channels": 10,
                  "vector_dim": MOTION_DIM + STYLE_DIM + 1 + attribute_dim()}
    assert C.model_kwargs_for(["trajectory"], 8, 16) == {"concat_channels": C.TRAJ_CHANNELS}
    assert C.model_kwargs_for(ALL, 8, 16, route="attention") == {"num_classes": 101,
                                                                 "context_dim": C.TEXT_DIM}
    with pytest.raises(ValueError, match="route"):
        C.model_kwargs_for(["text"], 8, 16, route="early")
    with pytest.raises(ValueError, match="size"):
        C.model_kwargs_for(["text"], 8, 4)


def test_build_cond_reads_the_ground_truth(batch):
    cond, lay = C.build_cond(ALL, batch, return_layout=True)
    b, _, t, h, w = batch["video"].shape
    assert cond["concat"].shape == (b, 10, t, h, w) and cond["context"].shape[:2] == cond["context_mask"].shape
    for key in ("label_keep", "concat_keep", "vector_keep", "context_keep"):
        assert cond[key].all(), key
    ff = cond["concat"][:, lay.concat["first_frame"]]
    assert torch.equal(ff[:, :3, 0], batch["video"][:, :, 0]) and (ff[:, 3, 0] == 1).all()
    traj = cond["concat"][:, lay.concat["trajectory"]]
    x, y = batch["trajectories"][0, 0, 2].round().long().tolist()
    assert traj[0, 0, 2].argmax() == y * w + x, "object 0's heatmap peaks at its true centre"
    sty = cond["vector"][:, lay.vector["style"]]
    assert torch.allclose(sty[:, :STYLE_DIM], style_code(batch["video"], batch["masks"]))
    assert (sty[:, -1] == 1).all()
    attrs = decode_attributes(cond["vector"][0, lay.vector["attributes"]])
    assert attrs["speed"] == pytest.approx(float((batch["trajectories"][0, 0, 1:] -
                                                  batch["trajectories"][0, 0, :-1]).norm(dim=-1).mean()), abs=1e-3)
    with pytest.raises(ValueError, match="trajectories"):
        C.build_cond(["trajectory"], {"video": batch["video"], "label": batch["label"]})


def test_keep_masks_combine_with_or(batch):
    b = batch["video"].shape[0]
    values = {"trajectory": batch["trajectories"], "first_frame": (batch["video"][:, :, 0],
                                                                   torch.zeros(b, MOTION_DIM))}
    keep = {"trajectory": torch.tensor([True, False, True, False]),
            "first_frame": torch.tensor([True, True, False, False])}
    cond, lay = C.encode_values(values, ["trajectory", "first_frame"], b, 6, 16, keep=keep)
    assert cond["concat_keep"].tolist() == [True, True, True, False], "OR of the two controls"
    tr, ff = cond["concat"][:, lay.concat["trajectory"]], cond["concat"][:, lay.concat["first_frame"]]
    assert [bool(tr[i].abs().sum() > 0) for i in range(b)] == keep["trajectory"].tolist()
    assert [bool(ff[i].abs().sum() > 0) for i in range(b)] == keep["first_frame"].tolist()
    # training dropout: deterministic under a seed, and still an OR
    c1 = C.build_cond(["trajectory", "first_frame"], batch, drop_p=0.5,
                      generator=torch.Generator().manual_seed(3))
    c2 = C.build_cond(["trajectory", "first_frame"], batch, drop_p=0.5,
                      generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(c1[k], c2[k]) for k in c1)
    has = c1["concat"].flatten(1).abs().sum(1) > 0
    assert torch.equal(c1["concat_keep"], has)


@pytest.mark.parametrize("route", C.ROUTES)
def test_models_accept_the_cond_and_any_subset(batch, route):
    torch.manual_seed(0)
    model = build_model("unet3d", **TINY, **C.model_kwargs_for(ALL, 6, 16, route=route))
    d = Diffusion()
    cond = C.build_cond(ALL, batch, drop_p=0.3, generator=torch.Generator().manual_seed(0),
                        route=route)
    loss = d.loss(model, batch["video"], cond, generator=torch.Generator().manual_seed(1))
    assert torch.isfinite(loss)
    sub = C.cond_for_spec({"text": "a red ball moves right", "trajectory": _rightward()}, ALL,
                          6, 16, route=route)
    assert d.sample(model, (1, 3, 6, 16, 16), cond=sub, steps=2).shape == (1, 3, 6, 16, 16)


def test_drop_controls_and_per_control_guidance(batch):
    conds = ["trajectory", "first_frame", "style"]
    cond, lay = C.build_cond(conds, batch, return_layout=True)
    only_ff = C.drop_controls(cond, lay, ["trajectory", "style"])
    assert (only_ff["concat"][:, lay.concat["trajectory"]] == 0).all()
    assert torch.equal(only_ff["concat"][:, lay.concat["first_frame"]],
                       cond["concat"][:, lay.concat["first_frame"]])
    assert only_ff["concat_keep"].all() and only_ff["vector_keep"].all(), (
        "first_frame also writes its motion code to the vector input, so both stay kept")
    assert (only_ff["vector"][:, lay.vector["style"]] == 0).all()
    none = C.drop_controls(cond, lay, conds)
    assert not none["concat_keep"].any() and not none["vector_keep"].any()

    calls = []

    def linear(x, t, c):          # a model linear in the (kept) controls: f(null) = 0
        calls.append(x.shape[0])
        s = (c["concat"] * c["concat_keep"][:, None, None, None, None]).flatten(1).sum(1) + \
            (c["vector"] * c["vector_keep"][:, None]).sum(1)
        return torch.zeros_like(x) + s.view(-1, 1, 1, 1, 1)

    x, t = torch.zeros(4, 3, 6, 16, 16), torch.full((4,), 0.5)
    part = {k: linear(x, t, C.drop_controls(cond, lay, [c for c in conds if c != k]))[:, 0, 0, 0, 0]
            for k in conds}
    calls.clear()
    g = C.ControlGuidance(linear, lay, {"trajectory": 2.0, "first_frame": 0.0, "style": 0.5})
    out = g(x, t, cond)[:, 0, 0, 0, 0]
    assert torch.allclose(out, 2 * part["trajectory"] + 0.5 * part["style"], rtol=1e-5, atol=1e-3)
    assert calls == [12], "null + 2 weighted controls in one batched forward"
    joint = C.ControlGuidance(linear, lay, 3.0)(x, t, cond)[:, 0, 0, 0, 0]
    assert torch.allclose(joint, 3 * linear(x, t, cond)[:, 0, 0, 0, 0], rtol=1e-5)
    with pytest.raises(ValueError, match="label"):
        C.ControlGuidance(linear, lay, {"label": 1.0})


def test_motion_guidance_nests_the_motion_request_inside_the_image(batch):
    """f(null) + w (f(image, motion unspecified) - f(null)) + w_m (f(image, motion) -
    f(image, motion unspecified)), checked on a model linear in its inputs: the image's
    part A gets w, the motion part M gets w_m; w_m = w is plain guidance."""
    conds = ["trajectory", "first_frame"]
    cond, lay = C.build_cond(conds, batch, return_layout=True)
    ff = lay.vector["first_frame"]
    cond["vector"][:, ff] = torch.tensor([0.5, 0.0, 1.0, 0.3, -0.2, 1.0])   # a request

    def linear(x, t, c):
        s = (c["concat"] * c["concat_keep"][:, None, None, None, None]).flatten(1).sum(1) + \
            (c["vector"] * c["vector_keep"][:, None]).sum(1)
        return torch.zeros_like(x) + s.view(-1, 1, 1, 1, 1)

    x, t = torch.zeros(4, 3, 6, 16, 16), torch.full((4,), 0.5)

    def f(c):
        return linear(x, t, c)[:, 0, 0, 0, 0]

    motion = cond["vector"][:, ff].sum(1)                                   # M
    rest = f(cond) - motion                                                 # A
    out = C.ControlGuidance(linear, lay, 2.0, motion_guidance=8.0)(x, t, cond)[:, 0, 0, 0, 0]
    assert torch.allclose(out, 2 * rest + 8 * motion, rtol=1e-5, atol=1e-3)
    same = C.ControlGuidance(linear, lay, 2.0, motion_guidance=2.0)(x, t, cond)
    assert torch.allclose(same, C.ControlGuidance(linear, lay, 2.0)(x, t, cond), rtol=1e-5, atol=1e-3)
    # per-control form: each control's term without the request, plus the motion term
    only = {k: f(C.drop_controls(cond, lay, [c for c in conds if c != k])) for k in conds}
    g = C.ControlGuidance(linear, lay, {"trajectory": 1.0, "first_frame": 3.0}, motion_guidance=5.0)
    assert torch.allclose(g(x, t, cond)[:, 0, 0, 0, 0],
                          only["trajectory"] + 3 * (only["first_frame"] - motion) + 5 * motion,
                          rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="first_frame"):
        C.ControlGuidance(linear, C.make_layout(["trajectory"]), 2.0, motion_guidance=4.0)


def test_spec_errors_are_specific():
    conds = ["text", "trajectory", "first_frame"]
    with pytest.raises(ValueError, match="attributes"):
        C.cond_for_spec({"attributes": {"speed": 1.0}}, conds, 6, 16)
    with pytest.raises(ValueError, match="empty caption"):
        C.cond_for_spec({"text": "   "}, conds, 6, 16)
    with pytest.raises(ValueError, match="outside the 16x16 frame"):
        C.cond_for_spec({"trajectory": bezier([[2, 8], [30, 8]], 6)}, conds, 6, 16)
    with pytest.raises(ValueError, match="max_speed"):
        C.cond_for_spec({"trajectory": _rightward()}, conds, 6, 16, max_speed=1.0)
    with pytest.raises(ValueError, match="frames"):
        C.cond_for_spec({"trajectory": _rightward(4)}, conds, 6, 16)
    with pytest.raises(ValueError, match="at most 2 objects"):
        C.cond_for_spec({"trajectory": torch.stack([_rightward()] * 3)}, conds, 6, 16)
    with pytest.raises(ValueError, match="spatial size"):
        C.cond_for_spec({"first_frame": torch.zeros(3, 8, 8)}, conds, 6, 16)
    with pytest.raises(ValueError, match="batch sizes disagree"):
        C.cond_for_spec({"text": ["a", "b"], "first_frame": torch.zeros(3, 3, 16, 16)}, conds, 6, 16)
    with pytest.raises(ValueError, match="reference"):
        C.cond_for_spec({"reference": torch.zeros(3, 4, 16, 16)}, ["text"], 6, 16)
    with pytest.raises(ValueError, match="unknown key"):
        C.cond_for_spec({"sound": 1}, conds, 6, 16)
    with pytest.raises(ValueError, match="motion"):
        C.cond_for_spec({"motion": {"zoom": 1.0}}, conds, 6, 16)
    comp = C.compose({"trajectory": bezier([[2, 8], [30, 8]], 6)}, conds, 6, 16,
                     out_of_frame="clamp")
    assert any("clamped" in n for n in comp.report.notes)


def test_spec_reference_motion_and_batch(batch):
    conds = ["text", "first_frame", "style", "attributes"]
    ref = batch["video"][1]
    values, b, notes, _ = C.spec_to_values(
        {"text": ["a red ball", "a blue ball"], "reference": ref,
         "motion": {"camera": (0.25, 0.0), "object": None}, "attributes": {"speed": 2.0}},
        conds, 6, 16)
    assert b == 2 and "reference video -> first_frame, style" in notes
    cond, lay = C.encode_values(values, conds, b, 6, 16)
    assert cond["concat"].shape[0] == 2 and torch.equal(cond["concat"][1, :3, 0], ref[:, 0])
    motion = cond["vector"][0, lay.vector["first_frame"]]
    assert motion.tolist() == [0.25, 0.0, 1.0, 0.0, 0.0, 0.0], "camera set, object unspecified"
    assert torch.allclose(cond["vector"][0, lay.vector["style"]][:STYLE_DIM], style_code(ref[None])[0])
    assert decode_attributes(cond["vector"][1, lay.vector["attributes"]]) == {"speed": pytest.approx(2.0)}


def test_conflicts_detected_reported_resolved():
    spec = {"text": "a red ball moves left", "trajectory": _rightward(),
            "attributes": {"colour": "blue", "speed": 2.2}}
    rep = C.detect_conflicts(spec, 16)
    kinds = sorted((c.a, c.b, c.kind) for c in rep.conflicts)
    assert kinds == [("text", "attributes", "colour"), ("text", "trajectory", "direction")], kinds
    new, g, rep = C.resolve_conflicts(spec, {"text": 3.0, "trajectory": 2.0}, "priority", size=16)
    assert "text" not in new and g == {"trajectory": 2.0} and rep.dropped == ["text"]
    assert "dropped 'text'" in str(rep)
    new, g, rep = C.resolve_conflicts(spec, 2.0, "weights", size=16)
    assert "text" in new and g["text"] == pytest.approx(2.0 * 0.25 * 0.25) and g["trajectory"] == 2.0
    with pytest.raises(ValueError, match="conflicting controls.*left"):
        C.resolve_conflicts(spec, None, "error", size=16)
    slow = {"trajectory": _rightward(), "attributes": {"speed": 8.0, "direction": 180.0}}
    assert sorted(c.kind for c in C.detect_conflicts(slow, 16).conflicts) == ["direction", "speed"]
    agree = {"text": "a blue ball moves right", "trajectory": _rightward(),
             "attributes": {"colour": "blue", "speed": 2.2, "direction": 0.0}}
    assert C.detect_conflicts(agree, 16).ok


def test_hard_conflict_first_frame_vs_trajectory():
    from viddiff_mini.control.text import COLORS

    path = bezier([[4.0, 8.0], [12.0, 8.0]], 6)
    frame = render_discs(path[None], 16, radius=2.0, colors=[COLORS["red"]])[:, 0]
    ok = {"text": "a red ball moves right", "first_frame": frame, "trajectory": path}
    assert C.detect_conflicts(ok, 16).ok
    moved = dict(ok, trajectory=path + torch.tensor([0.0, 6.0]))
    rep = C.detect_conflicts(moved, 16)
    assert len(rep.conflicts) == 1 and rep.conflicts[0].hard
    with pytest.raises(ValueError, match="first_frame vs trajectory"):
        C.compose(moved, ["text", "trajectory", "first_frame"], 6, 16, policy="error")
    comp = C.compose(moved, ["text", "trajectory", "first_frame"], 6, 16)
    assert "translated by (+0.0, -6.0)" in comp.report.actions[0]


def test_compose_samples_with_per_control_guidance(batch):
    conds = ["text", "trajectory", "first_frame"]
    torch.manual_seed(0)
    model = build_model("unet3d", **TINY, **C.model_kwargs_for(conds, 6, 16))
    comp = C.compose({"text": "a red ball moves left", "trajectory": _rightward(),
                      "reference": batch["video"][0]}, conds, 6, 16,
                     guidance={"text": 3.0, "trajectory": 2.0})
    assert comp.report.dropped == ["text"] and comp.guidance == {"trajectory": 2.0}
    assert not comp.cond["context_keep"].any(), "the dropped caption is the null context"
    assert isinstance(comp.guided(model), C.ControlGuidance)
    x = comp.sample(model, Diffusion(), steps=2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 3, 6, 16, 16) and torch.isfinite(x).all()


def test_truth_batch_for_labels_picks_each_class():
    b = C.truth_batch_for_labels(torch.tensor([3, 3, 7]), 4, 16)
    assert b["label"].tolist() == [3, 3, 7] and b["caption"][0] != b["caption"][1]
    with pytest.raises(ValueError, match="class 500"):
        C.truth_batch_for_labels([500], 4, 16)


def test_cli_train_with_controls_end_to_end(tmp_path):
    """`viddiff train --preset tiny --conditions text,trajectory,first_frame --steps 3`."""
    from viddiff_mini.cli import main
    from viddiff_mini.train import load_run

    out = tmp_path / "run"
    rc = main(["train", "--preset", "tiny", "--conditions", "text,trajectory,first_frame",
               "--steps", "3", "--out", str(out), "--quiet"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 3 and summary["final_loss"] == summary["final_loss"]
    assert (out / "samples" / "final.gif").exists()
    model, _, cfg = load_run(out)
    assert cfg.conditions == ["text", "trajectory", "first_frame"]
    assert model.concat_channels == C.TRAJ_CHANNELS + 4 and model.context_dim == C.TEXT_DIM
    assert main(["train", "--preset", "tiny", "--conditions", "text,sound", "--steps", "1",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 1
