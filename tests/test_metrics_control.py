"""metrics/control.py: ground-truth control metrics and `evaluate_controls`."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from viddiff_mini.config import get_preset
from viddiff_mini.control.attributes import attributes_from_truth
from viddiff_mini.control.compose import truth_batch_for_labels
from viddiff_mini.data.synthetic import CLASS_NAMES
from viddiff_mini.diffusion import Diffusion
from viddiff_mini.metrics import control as M

CLASSES = [CLASS_NAMES.index(n) for n in
           ("BounceCircle", "MoveRightSquare", "ThrowCircle", "ChaseCircleSquare")]


@pytest.fixture(scope="module")
def truth():
    return truth_batch_for_labels(torch.tensor(CLASSES), 16, 32)


def test_metrics_of_the_ground_truth_itself(truth):
    v = truth["video"]
    colors = M.object_colors(truth)
    assert colors[3][1] is not None and colors[0][1] is None, "chase has 2 objects, bounce 1"
    te = M.trajectory_error_px(v, truth["trajectories"], colors)
    assert te["mean"] < 0.8 and te["found"] > 0.95, te
    shifted = torch.roll(v, 5, dims=-1)
    assert M.trajectory_error_px(shifted, truth["trajectories"], colors)["mean"] > 4
    assert M.first_frame_fidelity(v, v[:, :, 0])["psnr"] == math.inf
    err = M.attribute_error(v, attributes_from_truth(truth), masks=truth["masks"])
    assert err["colour"] == 0 and err["speed"] < 0.2 and err["size"] < 1e-3, err
    est = M.attribute_error(v, attributes_from_truth(truth))     # foreground estimate
    assert est["speed"] < 0.5 and est["size"] < 1.0, est
    ge = M.gravity_error(v[[0, 2]], [truth["physics"][i]["gravity"] for i in (0, 2)],
                         [colors[0][0], colors[2][0]])
    assert ge["n"] == 2 and ge["rel_error"] < 0.15, ge
    tv = M.text_video_consistency(v, truth["caption"])
    assert tv["color_acc"] >= 0.75, tv
    src = v[:1]
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[:8] = True
    assert M.masked_psnr(src, src, mask) == math.inf


def test_metric_bad_input(truth):
    v = truth["video"]
    with pytest.raises(ValueError, match="requested"):
        M.trajectory_error_px(v, truth["trajectories"][:, :, :3], M.object_colors(truth))
    with pytest.raises(ValueError, match="one attribute dict per clip"):
        M.attribute_error(v, [{}])
    with pytest.raises(ValueError, match="captions"):
        M.text_video_consistency(v, ["a red ball"])


class OracleDenoiser(nn.Module):
    """A conditional denoiser that 'knows' the clips: it recognises the clip from the first
    frame in cond['concat'] and predicts it exactly (so samples = the truth clips)."""

    def __init__(self, clips, diffusion, ff_slice):
        super().__init__()
        self.register_buffer("clips", clips)
        self.d, self.ff = diffusion, ff_slice
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, cond):
        first = cond["concat"][:, self.ff][:, :3, 0]                     # (b, 3, h, w)
        dist = (first[:, None] - self.clips[None, :, :, 0]).flatten(2).pow(2).sum(-1)
        x0 = self.clips[dist.argmin(1)]
        alpha, sigma = self.d.alpha_sigma(t, x)
        eps = (x - alpha * x0) / sigma.clamp_min(1e-4)
        return self.d.objective.target(x0, eps, alpha, sigma)


def test_evaluate_controls_with_an_oracle_model(truth):
    # guidance 1: the oracle predicts from the first frame, which CFG's null branch drops
    cfg = get_preset("tiny", frames=16, size=32, num_classes=101, guidance=1.0,
                     conditions=["trajectory", "first_frame", "attributes"])
    d = Diffusion()
    from viddiff_mini.control.compose import make_layout
    lay = make_layout(cfg.conditions)
    model = OracleDenoiser(truth["video"], d, lay.concat["first_frame"])
    rep = M.evaluate_controls(model, d, cfg, n=4, steps=3, classes=CLASSES)
    assert rep["n"] == 4 and rep["conditions"] == cfg.conditions
    assert rep["trajectory_error_px"] < 0.8 and rep["trajectory_found"] > 0.95, rep
    assert rep["first_frame_psnr_db"] > 40, rep
    # pixel space: the replacement hook pastes the image into frame 0 at the last step too
    assert rep["first_frame_psnr_db_replaced"] > 60 and rep["first_frame_ssim_replaced"] > 0.99
    # measured on a foreground estimate: the chase clip's two objects blend into one colour
    assert rep["attribute_error/speed"] < 0.5 and rep["attribute_error/colour"] <= 0.25, rep
    assert rep["gravity_n"] == 2 and rep["gravity_rel_error"] < 0.15, rep
    # the oracle reproduces the real clips, so it scores their floor
    assert rep["real_gravity_rel_error"] == pytest.approx(rep["gravity_rel_error"], abs=0.05)
    assert not [k for k in rep if k.startswith("ae_")], "a pixel model has no autoencoder floor"
    assert rep["masked_psnr_db"] == math.inf
    guided = M.evaluate_controls(model, d, cfg, n=2, steps=2, classes=CLASSES[:2], drag=False,
                                 guidance={"first_frame": 1.0, "trajectory": 0.0})
    assert guided["first_frame_psnr_db"] > 40 and "masked_psnr_db" not in guided


def test_evaluate_control_run(tmp_path):
    from viddiff_mini.train import train

    cfg = get_preset("tiny", max_steps=1, sample_n=0, batch_size=2,
                     conditions=["label", "text", "first_frame"])
    train(cfg, tmp_path / "run", progress=False)
    rep = M.evaluate_control_run(tmp_path / "run", n=2, steps=2)
    assert rep["run"] == str(tmp_path / "run") and rep["n"] == 2
    for key in ("first_frame_psnr_db", "text_color_acc", "masked_psnr_db"):
        assert key in rep, key


class BatchSpy(nn.Module):
    """A denoiser that predicts zeros and records the batch size of every call."""

    def __init__(self):
        super().__init__()
        self.p, self.batches = nn.Parameter(torch.zeros(())), []

    def forward(self, x, t, cond):
        self.batches.append(x.shape[0])
        return torch.zeros_like(x)


@pytest.mark.parametrize("run_guidance, asked, passes", [
    (3.0, None, 2),     # None: the run's own guidance, as `viddiff sample` uses it
    (3.0, 1.0, 1),      # 1.0: no guidance, one pass
    (1.0, None, 1),
    (1.0, 2.5, 2),
])
def test_evaluate_controls_samples_with_the_runs_guidance_unless_told(run_guidance, asked,
                                                                      passes):
    cfg = get_preset("tiny", frames=8, size=16, num_classes=101, guidance=run_guidance,
                     conditions=["trajectory"])
    spy = BatchSpy()
    M.evaluate_controls(spy, Diffusion(), cfg, n=2, steps=2, classes=CLASSES[:2], drag=False,
                        guidance=asked)
    assert set(spy.batches) == {2 * passes}


def test_in_frame_request_scales_a_request_to_keep_the_object_inside():
    # hand-worked: a 5x5 square centred at (20, 16) in a 32x32 frame, 16 frames (15 steps)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[14:19, 18:23] = True
    cases = [
        # right at 0.8 px/frame: right edge at 22, 1 px margin -> 8 px of room for 12 asked
        ((0.8, 0.0), (20.0, 16.0), (0.8 * 8 / 12, 0.0)),
        # left at 0.4: 17 px of room for 6 asked -> unchanged (never scaled up)
        ((-0.4, 0.0), (20.0, 16.0), (-0.4, 0.0)),
        # diagonal (0.6, 0.8): x allows 8 / 0.6 = 13.3 px along v, y 12 / 0.8 = 15; asked 15
        ((0.6, 0.8), (20.0, 16.0), (0.6 * 13.333 / 15, 0.8 * 13.333 / 15)),
    ]
    for v, p, want in cases:
        got = M.in_frame_request(torch.tensor([p]), mask[None], torch.tensor([v]), 16, 32)
        assert torch.allclose(got[0], torch.tensor(want), atol=1e-3), (v, got)
    # no room at all (the object already touches the edge it is asked towards): still
    edge = torch.zeros(32, 32, dtype=torch.bool)
    edge[14:19, 27:32] = True
    got = M.in_frame_request(torch.tensor([[29.0, 16.0]]), edge[None], torch.tensor([[1.0, 0.0]]),
                             16, 32)
    assert got.abs().max() == 0
    # start unknown (NaN) or no motion: still, not NaN
    got = M.in_frame_request(torch.tensor([[float("nan")] * 2, [20.0, 16.0]]),
                             torch.stack([mask, mask]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
                             16, 32)
    assert torch.equal(got, torch.zeros(2, 2))
