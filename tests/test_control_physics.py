"""control/physics.py: gravity and restitution from trajectories, guidance toward physics."""

from __future__ import annotations

import math

import pytest
import torch

from viddiff_mini.control import physics as P
from viddiff_mini.control.toy import EmpiricalDenoiser
from viddiff_mini.data.synthetic import CLASS_NAMES, clip_index_table, render_batch, split_indices
from viddiff_mini.diffusion import Diffusion


def _indices(prefix, n, split="train"):
    table = clip_index_table()
    return [i for i in split_indices(split) if CLASS_NAMES[table[i][0]].startswith(prefix)][:n]


def test_parabola_hand_worked():
    f = torch.arange(10, dtype=torch.float64)
    y = 3.0 + 0.5 * f + 0.5 * 0.8 * f**2                       # g = 0.8 px/frame^2
    assert P.fit_gravity(y) == pytest.approx(0.8, abs=1e-9)
    assert P.detect_bounces(y) == []
    assert math.isnan(P.fit_gravity(y[:2]))


def test_bounce_between_frames_hand_worked():
    # fall from y=0 with g=2, floor at y=25 reached at tau=5; e=0.5; sampled at integer frames
    g, e, tau = 2.0, 0.5, 5.0
    f = torch.arange(12, dtype=torch.float64) + 0.4            # the impact falls between frames
    v_in = g * tau
    y = torch.where(f <= tau, 0.5 * g * f**2, 25 - e * v_in * (f - tau) + 0.5 * g * (f - tau) ** 2)
    assert P.fit_gravity(y) == pytest.approx(g, abs=1e-9)
    assert P.restitution(y) == [pytest.approx(e, abs=1e-9)]


def test_ground_truth_clips_recover_g_and_e():
    idx = _indices("Bounce", 12) + _indices("Throw", 4)
    b = render_batch(idx, frames=24, size=64, truth=True)
    for i in range(len(idx)):
        r = P.physics_residual(b["trajectories"][i, 0], b["physics"][i])
        assert r["g_rel_error"] < 1e-4, (b["caption"][i], r)
        for e in r["restitution_fit"]:
            assert e == pytest.approx(r["restitution_true"], abs=1e-3), (b["caption"][i], r)
        assert r["accel_rms"] < 1e-3


def test_collision_momentum_and_interpenetration():
    idx = _indices("Collide", 3)
    b = render_batch(idx, frames=32, size=64, truth=True)
    for i in range(len(idx)):
        p = b["physics"][i]
        tr = b["trajectories"][i]
        dm = P.momentum_change(tr[0], tr[1], p["mass"], p["mass2"],
                               collision=int(p["collision_frame"]))
        assert dm < 0.05, (b["caption"][i], dm)
    two = torch.tensor([[[0.0, 0.0], [5.0, 0.0]], [[8.0, 0.0], [8.0, 0.0]]])
    assert P.interpenetration(two, [2.0, 2.0]).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError, match="two trajectories"):
        P.interpenetration(two[:1], [1.0])


def test_penalty_prefers_parabolas():
    f = torch.arange(12, dtype=torch.float32)
    smooth = torch.stack([f, 0.3 * f**2], -1)[None]
    jitter = smooth + torch.randn(1, 12, 2, generator=torch.Generator().manual_seed(0))
    assert float(P.constant_accel_penalty(smooth)) < 1e-6
    assert float(P.constant_accel_penalty(jitter)) > 0.1
    assert float(P.constant_accel_penalty(smooth, g=0.6)) < 1e-6
    # one requested gravity per clip: each clip is held to its own (y'' = 2 * 0.3 = 0.6)
    two = torch.cat([smooth, torch.stack([f, 0.5 * f**2], -1)[None]])
    assert float(P.constant_accel_penalty(two, g=[0.6, 1.0])) < 1e-6
    assert float(P.constant_accel_penalty(two, g=[1.0, 0.6])) == pytest.approx(0.04)  # 0.4 off in y
    with pytest.raises(ValueError, match="one per clip"):
        P.constant_accel_penalty(two, g=[0.6, 1.0, 0.2])
    with pytest.raises(ValueError, match="3 frames"):
        P.constant_accel_penalty(smooth[:, :2])


@pytest.mark.parametrize("mode", ["x0", "xt"])
def test_guided_sampling_lowers_the_penalty(mode):
    b = render_batch(_indices("Throw", 4) + _indices("Bounce", 2), frames=12, size=16, truth=True)
    d = Diffusion()
    model = EmpiricalDenoiser(b["video"], d, temperature=20.0)   # blurry mixtures of clips
    out = P.compare_guidance(model, d, (2, 3, 12, 16, 16), scale=0.3, steps=6, mode=mode,
                             true_g=1.0)
    assert out["guided"]["penalty"] < out["unguided"]["penalty"], out
    assert len(out["guided"]["g_fit"]) == 2 and len(out["guided"]["g_rel_error"]) == 2
    assert out["videos"][0].shape == (2, 3, 12, 16, 16)


def test_xt_mode_needs_grad():
    b = render_batch(_indices("Throw", 2), frames=6, size=16, truth=True)
    d = Diffusion()
    model = EmpiricalDenoiser(b["video"], d)
    with pytest.raises(ValueError, match="grad=True"):
        d.sample(model, (1, 3, 6, 16, 16), steps=2, x0_hook=P.physics_guidance_hook(mode="xt"))
    with pytest.raises(ValueError, match="mode"):
        P.physics_guidance_hook(mode="z")


@pytest.mark.parametrize("g", [0.3, 0.8, 2.0])
def test_a_planned_throw_has_the_requested_gravity(g):
    path = P.ballistic_path((4.0, 20.0), (1.5, -g * 6), g, frames=16)
    assert path.shape == (16, 2)
    assert path[:, 0].tolist() == pytest.approx([4.0 + 1.5 * f for f in range(16)])
    assert path[6, 1] == pytest.approx(20.0 - g * 18)          # the apex at frame 6
    assert P.fit_gravity(path) == pytest.approx(g, rel=1e-4)


def test_a_planned_bounce_loses_speed_at_each_impact_and_comes_to_rest():
    path = P.ballistic_path((16.0, 4.0), (0.0, 0.0), 1.0, frames=32, floor=28.0,
                            restitution=0.6)
    y = path[:, 1]
    assert float(y.max()) <= 28.0 + 1e-4 and y[0] == 4.0
    assert P.fit_gravity(path) == pytest.approx(1.0, rel=1e-3)
    assert P.restitution(path, g=1.0)[0] == pytest.approx(0.6, abs=0.02)
    assert (y[-3:] == 28.0).all()                              # bounces died out: resting
    with pytest.raises(ValueError, match="below the floor"):
        P.ballistic_path((16.0, 30.0), (0.0, 0.0), 1.0, frames=8, floor=28.0)
