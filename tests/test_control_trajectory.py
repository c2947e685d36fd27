"""control/trajectory.py: Bezier curves, sparse points, checks, conditioning maps, measuring."""

from __future__ import annotations

import math

import pytest
import torch

from viddiff_mini.control import trajectory as T
from viddiff_mini.data.synthetic import render_batch, split_indices


def test_bezier_hand_worked_and_bernstein_agree():
    q = T.bezier([[0, 0], [1, 2], [2, 0]], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(q, torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]))
    g = torch.Generator().manual_seed(0)
    for order in (1, 2, 3, 7, 12):
        pts = torch.rand(order + 1, 2, generator=g) * 64
        a = T.bezier(pts, 17, order=order)
        b = T.bezier_bernstein(pts, 17)
        assert a.shape == (17, 2) and torch.allclose(a, b, atol=1e-3), order
        assert torch.allclose(a[0], pts[0]) and torch.allclose(a[-1], pts[-1], atol=1e-4)


def test_bezier_bad_input():
    with pytest.raises(ValueError, match="order 3 needs exactly 4"):
        T.bezier([[0, 0], [1, 1], [2, 0]], 8, order=3)
    with pytest.raises(ValueError, match="at least 2"):
        T.bezier([[0, 0]], 8)
    with pytest.raises(ValueError, match=r"\(m, 2\)"):
        T.bezier(torch.zeros(3, 3), 8)
    with pytest.raises(ValueError, match="finite"):
        T.bezier([[0, 0], [float("nan"), 1]], 8)
    with pytest.raises(ValueError, match="frames"):
        T.bezier([[0, 0], [1, 1]], 0)


def test_interpolate_points_passes_through_and_is_smooth():
    pts = torch.tensor([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    for method in T.INTERPOLATIONS:
        x = T.interpolate_points(pts, 10, times=[0, 3, 6, 9], method=method)
        assert x.shape == (10, 2) and torch.allclose(x[[0, 3, 6, 9]], pts, atol=1e-5), method
    lin = T.interpolate_points(pts, 10, times=[0, 3, 6, 9], method="linear")
    assert torch.allclose(lin[1], torch.tensor([10 / 3, 0.0]), atol=1e-5)
    # Catmull-Rom: C1 -> the velocity does not jump at the control points
    cr = T.interpolate_points(pts, 61, times=[0, 20, 40, 60])
    v = cr[1:] - cr[:-1]
    assert (v[20] - v[19]).norm() < 0.2 and (lin[4] - lin[3] - (lin[3] - lin[2])).norm() > 1
    with pytest.raises(ValueError, match="increase"):
        T.interpolate_points(pts, 10, times=[0, 3, 3, 9])
    with pytest.raises(ValueError, match="method"):
        T.interpolate_points(pts, 10, method="spline")


def test_stack_and_check_crossing_depth_order():
    a = T.bezier([[4, 16], [28, 16]], 7)
    b = T.bezier([[28, 16], [4, 16]], 7)
    traj = T.stack_trajectories([a, b])
    _, rep = T.check_trajectories(traj, 32, z=[0, 1], radius=3.0)
    assert rep.feasible and [(c[2], c[3]) for c in rep.crossings] == [(3, 1)]
    assert rep.occluded[0].nonzero().flatten().tolist() == [3] and not rep.occluded[1].any()
    _, rep = T.check_trajectories(traj, 32, z=[2, 1], radius=3.0)
    assert rep.occluded[1, 3] and not rep.occluded[0].any()
    _, rep = T.check_trajectories(traj, 32, radius=3.0, no_overlap=True)
    assert not rep.feasible and "no_overlap" in rep.issues[0]
    with pytest.raises(ValueError, match="cannot be met"):
        rep.raise_if_infeasible()
    with pytest.raises(ValueError, match="same number of frames"):
        T.stack_trajectories([a, b[:5]])


def test_check_impossible_requests():
    x = T.bezier([[2, 2], [30, 30]], 5)                 # 9.9 px/frame
    _, rep = T.check_trajectories(x, 32, max_speed=5.0)
    assert not rep.feasible and "max_speed" in rep.issues[0] and rep.speeds[0] == pytest.approx(
        math.hypot(7, 7), abs=1e-4)
    out = T.bezier([[2, 2], [40, 20]], 5)
    with pytest.raises(ValueError, match=r"object 0 at frame \d.*outside the 32x32 frame"):
        T.check_trajectories(out, 32)
    clamped, rep = T.check_trajectories(out, 32, out_of_frame="clamp")
    assert rep.clamped and rep.clamped_points >= 1 and clamped[..., 0].max() == 31
    assert "clamped" in str(rep)
    with pytest.raises(ValueError, match="z"):
        T.check_trajectories(out, 64, z=[0, 1])


def test_heatmaps_and_displacement_maps():
    traj = torch.tensor([[[5.0, 7.0], [7.0, 7.0], [float("nan"), float("nan")]]])
    h = T.trajectory_heatmaps(traj, (12, 16), sigma=2.0)
    assert h.shape == (1, 3, 12, 16) and h[0, 0, 7, 5] == 1 and (h[0, 2] == 0).all()
    assert h[0, 0, 7, 7] == pytest.approx(math.exp(-0.5), abs=1e-6)
    d = T.displacement_maps(traj, (12, 16), sigma=2.0)
    assert d.shape == (2, 3, 12, 16)
    assert d[0, 0, 7, 5] == pytest.approx(2.0 / 16) and d[1, 0, 7, 5] == 0, "dx / size at the centre"
    both = T.trajectory_maps(traj, (12, 16), "both")
    assert both.shape == (3, 3, 12, 16) and torch.isfinite(both).all()
    with pytest.raises(ValueError, match="kind"):
        T.trajectory_maps(traj, 12, "flow")
    with pytest.raises(ValueError, match="sigma"):
        T.trajectory_heatmaps(traj, 12, sigma=0)


def test_render_discs_and_measured_error_is_small():
    traj = T.stack_trajectories([T.bezier([[4, 8], [16, 30], [28, 8]], 8),
                                 T.bezier([[28, 24], [4, 24]], 8)])
    video = T.render_discs(traj, 32, radius=3.0)
    assert video.shape == (3, 8, 32, 32) and video.min() >= -1 and video.max() <= 1
    fg = T.foreground_map(video[None], color=(1.0, -1.0, -1.0))     # object 0 is red
    soft = T.soft_centroid(fg)[0]
    hard = T.mask_centroids(fg[0] > 0.5)
    assert T.trajectory_error(traj[0], hard) < 0.3
    assert T.trajectory_error(traj[0], soft) < 0.6
    assert T.trajectory_error(traj[0], traj[1]) > 5
    assert math.isnan(T.trajectory_error(torch.full((3, 2), float("nan")), torch.zeros(3, 2)))
    with pytest.raises(ValueError, match="same shape"):
        T.trajectory_error(traj[0], traj[0, :4])


def test_soft_centroid_is_differentiable():
    fg = torch.zeros(1, 2, 8, 8)
    fg[0, :, 2, 5] = 1.0
    fg.requires_grad_(True)
    c = T.soft_centroid(fg)
    assert torch.allclose(c.detach(), torch.tensor([[[5.0, 2.0], [5.0, 2.0]]]), atol=1e-4)
    c[..., 0].sum().backward()
    assert fg.grad is not None and fg.grad.abs().sum() > 0


def test_ground_truth_masks_give_the_ground_truth_path():
    b = render_batch(split_indices("train")[:40:5], frames=8, size=32, truth=True)
    c = T.mask_centroids(b["masks"][:, 0])
    err = T.trajectory_error(b["trajectories"][:, 0], c)
    assert err < 0.6, f"mask centroids vs true centres: {err:.2f} px"
