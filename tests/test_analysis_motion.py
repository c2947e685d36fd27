"""analysis/motion.py: flow (estimated vs ground truth), trajectories, camera motion, priors."""

import math

import pytest
import torch

from viddiff_mini.analysis.motion import (
    color_wheel,
    constant_velocity_residual,
    decompose_motion,
    endpoint_error,
    estimate_flow,
    fit_global_motion,
    flow_error_report,
    flow_to_rgb,
    global_flow_from_params,
    motion_prior_hook,
    similarity_to_camera,
    smooth_trajectory,
    temporal_acceleration_energy,
    trajectories_from_masks,
    warp,
)
from viddiff_mini.data.synthetic import render_batch


def _texture(size=40, seed=0):
    """A smooth random texture (1, 3, size, size) in about [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic",
                                           align_corners=False).clamp(-1, 1)


def test_flow_to_rgb_colour_wheel():
    vecs = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0], [0.5, 0.0]])
    flow = vecs.T.reshape(2, 1, 4)
    rgb = (flow_to_rgb(flow, max_mag=1.0)[:, 0].T + 1) / 2   # back to [0, 1]
    assert rgb[0].tolist() == pytest.approx([1, 0, 0], abs=1e-5)       # right: red
    assert rgb[1].tolist() == pytest.approx([0, 1, 1], abs=1e-5)       # left: cyan
    assert rgb[2].tolist() == pytest.approx([1, 1, 1], abs=1e-5)       # still: white
    assert rgb[3].tolist() == pytest.approx([1, 0.5, 0.5], abs=1e-5)   # half speed
    assert flow_to_rgb(torch.zeros(2, 2, 3, 5, 5)).shape == (2, 3, 3, 5, 5)   # clip flow
    assert flow_to_rgb(torch.zeros(4, 2, 5, 5)).shape == (4, 3, 5, 5)
    wheel = color_wheel(16)
    assert wheel.shape == (3, 16, 16) and wheel.min() >= -1 and wheel.max() <= 1
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, h, w\)"):
        flow_to_rgb(torch.zeros(3, 4, 4))


def test_warp_integer_shift_and_identity():
    img = _texture(16)
    assert torch.allclose(warp(img, torch.zeros(1, 2, 16, 16)), img, atol=1e-6)
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0] = 2.0
    out = warp(img, flow)          # out(p) = img(p + 2 px right)
    assert torch.allclose(out[..., :-2], img[..., 2:], atol=1e-5)
    with pytest.raises(ValueError, match="flow"):
        warp(img, torch.zeros(1, 2, 8, 8))


def test_estimate_flow_on_translated_texture():
    tex = _texture(40)
    true = torch.zeros(1, 2, 40, 40)
    true[:, 0], true[:, 1] = 1.5, -1.0
    # frame 1 = frame 0 moved by (1.5, -1): frame1(p) = frame0(p - d), i.e. warp by -d
    f1 = warp(tex, -true)
    video = torch.stack([tex, f1], dim=2)
    est = estimate_flow(video)
    assert est.shape == (1, 2, 1, 40, 40)
    inner = (slice(None), slice(None), 0, slice(6, -6), slice(6, -6))
    epe = endpoint_error(est[inner], true[:, :, 6:-6, 6:-6])
    assert epe < 0.3, f"a smooth texture translated by (1.5, -1) px: EPE {epe:.3f}"


def test_estimate_flow_against_moving_shapes_truth():
    # 16 frames at 32 px: motions of ~1-2 px per frame (Horn–Schunck fails on > ~8 px)
    b = render_batch([6428, 4200, 9000, 12000], frames=16, size=32, truth=True)
    est = estimate_flow(b["video"])
    moving = b["flow"].norm(dim=1) > 0.5
    epe = endpoint_error(est, b["flow"], moving)
    zero = endpoint_error(torch.zeros_like(est), b["flow"], moving)
    assert epe < 0.5 * zero, f"Horn–Schunck EPE on moving pixels {epe:.2f} vs no-motion {zero:.2f}"
    rep = flow_error_report(est, b["flow"])
    assert rep["epe_moving"] == pytest.approx(epe) and rep["zero_epe_moving"] == pytest.approx(zero)
    assert set(rep) == {"epe", "epe_moving", "epe_static", "zero_epe", "zero_epe_moving"}


def test_estimate_flow_rejects_single_frame():
    with pytest.raises(ValueError, match="at least 2 frames"):
        estimate_flow(torch.zeros(1, 3, 1, 16, 16))
    with pytest.raises(ValueError, match=r"\(b, c, t, h, w\)"):
        estimate_flow(torch.zeros(3, 4, 16, 16))
    with pytest.raises(ValueError, match="chunk"):
        estimate_flow(torch.zeros(1, 3, 2, 16, 16), chunk=0)


def test_endpoint_error_mask_and_shapes():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.zeros(1, 2, 2, 2)
    b[0, 0, 0, 0] = 3.0
    b[0, 1, 0, 0] = 4.0
    assert endpoint_error(a, b) == pytest.approx(5 / 4)
    m = torch.zeros(1, 2, 2, dtype=torch.bool)
    m[0, 0, 0] = True
    assert endpoint_error(a, b, m) == pytest.approx(5.0)
    assert math.isnan(endpoint_error(a, b, torch.zeros_like(m)))
    with pytest.raises(ValueError):
        endpoint_error(a, b[:, :, :1])


def test_trajectories_from_masks_match_truth():
    b = render_batch([6428, 4200], frames=6, size=48, truth=True)
    tr = trajectories_from_masks(b["masks"])
    truth = b["trajectories"]
    ok = ~torch.isnan(tr[..., 0]) & ~torch.isnan(truth[..., 0])
    assert ok.any() and (tr - truth).norm(dim=-1)[ok].max() < 1.0
    assert torch.isnan(tr[0, 1]).all()   # the second object slot is empty in this clip
    assert trajectories_from_masks(b["masks"][0]).shape == (2, 6, 2)


def test_fit_global_motion_recovers_similarity():
    params = torch.tensor([[1.0, -2.0, 0.05, 0.02]])      # pan + zoom + roll
    flow = global_flow_from_params(params, 24, 32, "similarity")
    got, fitted = fit_global_motion(flow, "similarity")
    assert torch.allclose(got, params, atol=1e-4) and torch.allclose(fitted, flow, atol=1e-3)
    cam = similarity_to_camera(got[0])
    assert cam["scale"].item() == pytest.approx(math.hypot(1.05, 0.02), abs=1e-4)
    assert cam["angle"].item() == pytest.approx(math.atan2(0.02, 1.05), abs=1e-4)
    with pytest.raises(ValueError, match="model"):
        fit_global_motion(flow, "projective")


def test_decompose_motion_robust_to_an_object():
    flow = torch.zeros(2, 2, 3, 24, 24)           # (b, 2, t, h, w)
    flow[:, 0], flow[:, 1] = -1.5, 0.5             # camera
    flow[:, 0, :, 4:12, 6:14] += 4.0               # an object
    glob, local = decompose_motion(flow, "affine")
    assert glob.shape == flow.shape and torch.allclose(glob + local, flow)
    assert (glob[:, 0] + 1.5).abs().max() < 0.05 and (glob[:, 1] - 0.5).abs().max() < 0.05
    assert local[:, 0, :, 4:12, 6:14].mean() == pytest.approx(4.0, abs=0.05)


def test_fit_global_motion_on_a_camera_pan():
    from viddiff_mini.data.synthetic import CLASS_NAMES, clip_index_table

    label = CLASS_NAMES.index("PanLeftCircle")
    idx = next(i for i, (lab, _, _) in enumerate(clip_index_table()) if lab == label)
    b = render_batch([idx], frames=4, size=48, truth=True)
    params, _ = fit_global_motion(b["flow"], "translation")   # (1, t-1, 2)
    cam_velocity = b["camera"][0, 1:] - b["camera"][0, :-1]   # the camera moves left ...
    assert torch.allclose(params[0], -cam_velocity, atol=0.05)  # ... so content moves right


def test_smooth_trajectory_properties():
    t = torch.arange(10, dtype=torch.float32)
    line = torch.stack([t, 2 * t], -1)
    assert torch.allclose(smooth_trajectory(line, 50.0), line, atol=1e-4)
    g = torch.Generator().manual_seed(0)
    noisy = line + torch.randn(3, 10, 2, generator=g)
    sm = smooth_trajectory(noisy, 10.0)
    assert (constant_velocity_residual(sm) < constant_velocity_residual(noisy)).all()
    assert torch.allclose(smooth_trajectory(noisy, 0.0), noisy, atol=1e-5)
    with pytest.raises(ValueError, match="NaN"):
        smooth_trajectory(torch.full((5, 2), float("nan")))
    with pytest.raises(ValueError, match="lam"):
        smooth_trajectory(line, -1.0)


def test_motion_prior_hook():
    g = torch.Generator().manual_seed(1)
    ramp = torch.linspace(-0.5, 0.5, 6)[None, None, :, None, None].expand(1, 3, 6, 4, 4)
    hook = motion_prior_hook(weight=1.0, steps=3)
    assert torch.allclose(hook(ramp.clone(), None), ramp, atol=1e-6)   # linear in time: kept
    noisy = (ramp + 0.2 * torch.randn(1, 3, 6, 4, 4, generator=g)).clamp(-1, 1)
    assert temporal_acceleration_energy(hook(noisy, None)) < 0.5 * temporal_acceleration_energy(noisy)
    with pytest.raises(ValueError, match="weight"):
        motion_prior_hook(weight=3.0)


def test_motion_prior_as_sampler_hook():
    from viddiff_mini.diffusion import Diffusion

    calls = []
    hook = motion_prior_hook(weight=0.5)

    def counting(x0, t):
        calls.append(float(t) if torch.is_tensor(t) and t.numel() == 1 else t)
        return hook(x0, t)

    class Zero(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return torch.zeros_like(x)

    out = Diffusion().sample(Zero(), (1, 3, 5, 8, 8), steps=3,
                             generator=torch.Generator().manual_seed(0), x0_hook=counting)
    assert out.shape == (1, 3, 5, 8, 8) and len(calls) == 3
