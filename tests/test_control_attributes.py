"""control/attributes.py: encoding any subset of attributes, truth, measurement, errors."""

from __future__ import annotations

import math

import pytest
import torch

from viddiff_mini.control import attributes as A
from viddiff_mini.data.synthetic import render_batch, split_indices


def test_encode_decode_roundtrip_any_subset():
    full = {"speed": 2.0, "size": 5.0, "colour": "red", "direction": 90.0, "brightness": -0.3}
    v = A.encode_attributes(full)
    assert v.shape == (A.attribute_dim(),)
    back = A.decode_attributes(v)
    assert back.keys() == full.keys() and back["colour"] == "red"
    for k in ("speed", "size", "direction", "brightness"):
        assert back[k] == pytest.approx(full[k], abs=1e-4), k
    only = A.decode_attributes(A.encode_attributes({"speed": 1.0}))
    assert only == {"speed": pytest.approx(1.0)}
    assert A.encode_attributes(None).abs().sum() == 0 and A.encode_attributes({}).abs().sum() == 0


def test_bad_attributes_are_named():
    with pytest.raises(ValueError, match="unknown attribute"):
        A.encode_attributes({"weight": 2})
    with pytest.raises(ValueError, match=r"attrs\['colour'\]"):
        A.encode_attributes({"colour": "mauve"})
    with pytest.raises(ValueError, match=r"speed.*outside the valid range"):
        A.encode_attributes({"speed": 100.0})
    with pytest.raises(ValueError, match="finite"):
        A.encode_attributes({"direction": float("nan")})
    with pytest.raises(ValueError, match="shape"):
        A.decode_attributes(torch.zeros(3))


def test_truth_and_measurement_agree():
    b = render_batch(split_indices("train")[::301][:12], frames=8, size=32, truth=True)
    truth = A.attributes_from_truth(b)
    measured = A.measure_attributes(b["video"], b["masks"])
    for t, m in zip(truth, measured):
        err = A.attribute_errors(t, m)
        assert err.get("speed", 0) < 0.5 and err.get("size", 0) < 1e-4, (t, m)
        if t.get("speed", 0) > 1.0:          # a slow object's direction is ill-defined
            assert err.get("direction", 0) < 5, (t, m)
        assert err.get("brightness", 0) < 1e-6, (t, m)
        assert err.get("colour", 0) == 0 or math.isnan(err["colour"]), (t, m)


def test_attribute_errors_values():
    err = A.attribute_errors({"speed": 2.0, "direction": 350.0, "colour": "red", "size": 3.0},
                             {"speed": 3.5, "direction": 10.0, "colour": "blue"})
    assert err["speed"] == 1.5 and err["direction"] == pytest.approx(20.0)
    assert err["colour"] == 1.0 and math.isnan(err["size"])
    with pytest.raises(ValueError, match="unknown"):
        A.attribute_errors({"mass": 1}, {})
    with pytest.raises(ValueError, match="video"):
        A.measure_attributes(torch.zeros(3, 8, 8, 8))
