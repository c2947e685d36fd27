"""Presets and data specs: valid names work, invalid ones name the valid ones."""

import json

import pytest

from viddiff_mini.config import PRESETS, TrainConfig, get_preset, parse_data_spec


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = get_preset(name)
    back = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back.preset == name and back.frames == cfg.frames and back.lr == cfg.lr


def test_gpu_preset_is_the_full_problem():
    cfg = get_preset("gpu")
    assert (cfg.num_classes, cfg.frames, cfg.size) == (101, 16, 64)
    assert cfg.conditions == ["label"] and cfg.guidance > 1


def test_auto_is_cpu_without_cuda():
    import torch
    assert get_preset("auto").preset == ("gpu" if torch.cuda.is_available() else "cpu")


def test_overrides_and_unknown_preset():
    assert get_preset("tiny", max_steps=3).max_steps == 3
    with pytest.raises(ValueError, match="valid presets: tiny, cpu, gpu, auto"):
        get_preset("huge")
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"nope": 1})


def test_data_specs():
    assert parse_data_spec("shapes") == ("shapes", None)
    assert parse_data_spec("ucf101:/d/UCF") == ("ucf101", "/d/UCF")
    with pytest.raises(ValueError, match="needs a path"):
        parse_data_spec("folder")
    with pytest.raises(ValueError, match="valid: shapes"):
        parse_data_spec("kinetics:/x")
