"""analysis/consistency.py: temporal-consistency measurements and regularisation losses."""

import math

import pytest
import torch

from viddiff_mini.analysis.consistency import (
    TEMPORAL_LOSSES,
    add_brightness_flicker,
    appearance_drift,
    consistency_report,
    flicker_index,
    frame_brightness,
    frame_diff_loss,
    get_temporal_loss,
    independent_frame_noise,
    lighting_consistency,
    mask_iou,
    motion_continuity,
    object_persistence,
    temporal_regularise,
    warp_error,
)
from viddiff_mini.data.synthetic import render_batch

MOVE_RIGHT = 6428   # a MoveRightSquare clip of the fold-1 test split


@pytest.fixture(scope="module")
def clip():
    return render_batch([MOVE_RIGHT, 1400 * 3], frames=8, size=32, truth=True)


def _blob(shift=2, frames=4, size=24, bg=0.0):
    """(1, 3, frames, size, size) blob moving ``shift`` px right per frame, far from borders."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    f = [bg + 0.8 * torch.exp(-((xs - 6 - shift * i) ** 2 + (ys - 12) ** 2) / 4.5)
         for i in range(frames)]
    return torch.stack(f)[None, None].expand(1, 3, -1, -1, -1).clone()


def _const_flow(dx, b=1, t=3, size=24):
    flow = torch.zeros(b, 2, t, size, size)
    flow[:, 0] = dx
    return flow


def test_mask_iou_hand_worked():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2, :2] = True            # 4 pixels
    b[0, :2, 1:3] = True           # overlap 2, union 6
    iou = mask_iou(a, b)
    assert iou[0].item() == pytest.approx(1 / 3) and math.isnan(iou[1].item())


def test_object_persistence(clip):
    masks, flow = clip["masks"], clip["flow"]
    with_flow = object_persistence(masks, flow)
    no_flow = object_persistence(masks)
    assert with_flow.shape == (2, masks.shape[1])
    assert with_flow[0, 0] > 0.8 and no_flow[0, 0] > 0.8   # a rigid moving square persists
    broken = masks.clone()
    broken[0, 0, 4] = False        # the square vanishes for one frame
    assert object_persistence(broken)[0, 0] < no_flow[0, 0] - 0.1
    with pytest.raises(ValueError, match="masks"):
        object_persistence(masks[0])


def test_appearance_drift(clip):
    video, masks = clip["video"], clip["masks"]
    stable = appearance_drift(video, masks)
    assert stable[0, 0] < 0.05
    recoloured = video.clone()
    m = masks[0, 0, -1]
    recoloured[0, 0, -1][m] = 1.0   # last frame: the object turns red
    assert appearance_drift(recoloured, masks)[0, 0] > stable[0, 0] + 0.2


def test_motion_continuity():
    t = torch.arange(8, dtype=torch.float32)
    line = torch.stack([2 * t, 5 + 0 * t], -1)
    tele = line.clone()
    tele[5:] += torch.tensor([10.0, 0.0])       # a jump of 10 px
    with_nan = line.clone()
    with_nan[3] = float("nan")
    mc = motion_continuity(torch.stack([line, tele, with_nan])[None])
    assert mc["mean_acc"][0].tolist()[0] == pytest.approx(0.0, abs=1e-6)
    assert mc["max_acc"][0, 1] == pytest.approx(10.0) and mc["max_speed"][0, 0] == pytest.approx(2.0)
    assert mc["mean_acc"][0, 2] == pytest.approx(0.0, abs=1e-6)  # NaN frames ignored
    all_nan = torch.full((1, 1, 5, 2), float("nan"))
    assert math.isnan(motion_continuity(all_nan)["max_acc"].item())


def test_lighting_consistency_fade_vs_flicker():
    fade = torch.linspace(-0.5, 0.5, 9)[None, None, :, None, None].expand(1, 3, 9, 8, 8)
    flick = (0.2 * (torch.arange(9) % 2))[None, None, :, None, None].expand(1, 3, 9, 8, 8)
    lf, lk = lighting_consistency(fade.clone()), lighting_consistency(flick.float().clone())
    assert lf["drift"].item() == pytest.approx(1.0, abs=1e-5) and lf["jitter"].item() < 1e-6
    assert lk["jitter"].item() == pytest.approx(0.4, abs=1e-5) and lk["drift"].item() < 1e-6
    for v in list(lf.values()) + list(lk.values()):
        assert v.shape == (1,)
    assert 0 <= lf["hist_step"].item() <= 1 and lf["hist_drift"].item() == pytest.approx(1.0)
    assert frame_brightness(fade.clone())[0].tolist() == pytest.approx(
        torch.linspace(-0.5, 0.5, 9).tolist(), abs=1e-5)


def test_flicker_index(clip):
    video = clip["video"][:1]
    base = flicker_index(video).item()
    g = torch.Generator().manual_seed(0)
    flickered = add_brightness_flicker(video, 0.15, generator=g)
    assert flicker_index(flickered).item() > base + 0.05
    fade = (video + torch.linspace(0, 0.3, 8)[None, None, :, None, None]).clamp(-1, 1)
    assert flicker_index(fade).item() < base + 0.01   # a slow fade is drift, not flicker
    shimmer = independent_frame_noise(video, generator=torch.Generator().manual_seed(1))
    assert shimmer.shape == video.shape


def test_warp_error_truth_vs_none(clip):
    video, flow = clip["video"][:1], clip["flow"][:1]
    gt = warp_error(video, flow).item()
    zero = warp_error(video, torch.zeros_like(flow)).item()
    est = warp_error(video).item()   # Horn–Schunck estimate
    assert gt < 0.8 * zero and est < zero
    flickered = add_brightness_flicker(video, 0.2, generator=torch.Generator().manual_seed(2))
    assert warp_error(flickered, flow).item() > gt + 0.02
    with pytest.raises(ValueError, match=r"\(b, 2, t-1, h, w\)"):
        warp_error(video, flow[:, :, :-1])


def test_bad_video_messages():
    with pytest.raises(ValueError, match=r"\(b, c, t, h, w\)"):
        flicker_index(torch.zeros(3, 4, 8, 8))
    with pytest.raises(ValueError, match="floating"):
        frame_brightness(torch.zeros(1, 3, 4, 8, 8, dtype=torch.uint8))


@pytest.mark.parametrize("name", sorted(TEMPORAL_LOSSES))
def test_temporal_losses_train_py_call(name):
    """train.py calls get_temporal_loss(name)(x0_pred, x0, flow=batch.get("flow"))."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 4, 16, 16, generator=g) * 2 - 1
    pred = (x0 + 0.1 * torch.randn(x0.shape, generator=g)).requires_grad_(True)
    flow = torch.zeros(2, 2, 3, 16, 16)
    for fl in (flow, None):
        loss = get_temporal_loss(name)(pred, x0, flow=fl)
        assert loss.ndim == 0 and torch.isfinite(loss)
        loss.backward()
        assert pred.grad is not None
        pred.grad = None
    same = get_temporal_loss(name)(x0, x0, flow=flow)
    assert same.item() == pytest.approx(0.0, abs=1e-10)


def test_temporal_loss_registry_errors():
    with pytest.raises(ValueError, match="frame_diff"):
        get_temporal_loss("optical")
    x = torch.zeros(1, 3, 4, 8, 8)
    with pytest.raises(ValueError, match="target_x0"):
        frame_diff_loss(x, torch.zeros(1, 3, 3, 8, 8))


def test_frame_diff_and_flow_warp_hand_worked():
    pred = torch.tensor([0.0, 0.5, 0.5])[None, None, :, None, None].expand(1, 3, 3, 4, 4)
    assert frame_diff_loss(pred.clone()).item() == pytest.approx(0.125)
    video = _blob(shift=2, frames=4)
    flow = _const_flow(2.0, t=3)
    assert get_temporal_loss("flow_warp")(video, None, flow=flow).item() < 1e-8
    assert get_temporal_loss("frame_diff")(video, None).item() > 1e-3
    # feature loss: grows with the flicker of pred against the target
    feature = get_temporal_loss("feature")
    weak, strong = video.clone(), video.clone()
    weak[:, :, 1] += 0.1
    strong[:, :, 1] += 0.3
    assert 1e-6 < feature(weak, video).item() < feature(strong, video).item()


def test_temporal_regularise_removes_flicker(clip):
    video = clip["video"][:1]
    noisy = add_brightness_flicker(video, 0.15, generator=torch.Generator().manual_seed(4))
    clean = temporal_regularise(noisy, "frame_diff", weight=5.0, steps=60)
    assert clean.shape == noisy.shape
    assert flicker_index(clean).item() < 0.5 * flicker_index(noisy).item()


def test_consistency_report_keys(clip):
    rep = consistency_report(clip["video"], clip["flow"], clip["masks"], clip["trajectories"])
    for k in ("flicker", "warp_error", "light_drift", "light_jitter", "persistence",
              "appearance_drift", "mean_acc"):
        assert k in rep and isinstance(rep[k], float)
