"""viddiff_mini.evaluate: the advice printed beside an unreliable FVD-probe."""

from __future__ import annotations

from viddiff_mini.evaluate import fvd_advice


def _report(n_real, n_fake, classes=8, dim=128):
    return {"fvd_n_real": n_real, "fvd_n_fake": n_fake, "fvd_feature_dim": dim,
            "fvd_classes": classes, "fvd_reliable": False}


def test_fvd_advice_names_each_short_side_and_its_fix():
    # 8 classes, v1: 80 real clips and 80 samples for 128 dims -> both sides short
    msg = fvd_advice(_report(80, 80), "msh101-v1")
    assert "80 real clips and 80 samples for 128-dim" in msg
    assert "--n-per-class 17" in msg                      # 17 * 8 = 136 > 128; 16 * 8 is not
    assert "--fvd-protocol msh101-dense-v1" in msg
    # enough samples, real clips short: only the protocol is named
    msg = fvd_advice(_report(80, 136), "msh101-v1")
    assert "--n-per-class" not in msg and "--fvd-protocol msh101-dense-v1" in msg
    # already on the densest protocol: it says so instead of naming it again
    msg = fvd_advice(_report(80, 136, classes=4), "msh101-dense-v1")
    assert "--fvd-protocol" not in msg and "no protocol has more than 20" in msg
