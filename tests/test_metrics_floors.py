"""metrics/floors.py: the control yardsticks on an autoencoder's round trip of real clips."""

from __future__ import annotations

import math

import pytest

from viddiff_mini.metrics.floors import round_trip_floors

SMALL = dict(n_text=8, n_paths=4, n_physics=2, n_probe=1)


@pytest.fixture(scope="module")
def floors():
    return {name: round_trip_floors(name, **SMALL) for name in ("msh-ae", "msh-ae-t1")}


def test_every_yardstick_is_measured_beside_the_raw_clips(floors):
    for name, f in floors.items():
        assert f["latent"] == name and f["gravity_n"] == 12
        for key in ("text_color_acc", "probe_in_run_24", "probe_101way_24"):
            assert 0 <= f[key] <= 1, (name, key, f[key])
        # the raw clips are what the instruments were built on: they pass
        assert f["real_text_color_acc"] == 1.0 and f["real_probe_in_run_24"] == 1.0
        assert f["real_gravity_rel_error"] < 0.1 and f["real_trajectory_error_px"] < 0.5
        # a round trip loses something, never gains: a track no closer than the raw clip's
        assert f["trajectory_error_px"] >= f["real_trajectory_error_px"] - 0.05, (name, f)
        assert math.isfinite(f["psnr_db"]) and 25 < f["psnr_db"] < 60


def test_an_autoencoder_that_halves_time_cannot_show_gravity(floors):
    # msh-ae decodes each pair of frames nearly alike: a fast fall becomes a staircase and
    # the fitted gravity is far off; msh-ae-t1 keeps every frame and stays near the raw fit
    ae, t1 = floors["msh-ae"], floors["msh-ae-t1"]
    assert ae["gravity_rel_error"] > 0.3 > 0.1 > t1["gravity_rel_error"], (ae, t1)
    assert t1["trajectory_error_px"] < ae["trajectory_error_px"]
