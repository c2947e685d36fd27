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
    with pytest.raises(ValueError, match="valid presets: tiny, cpu, cpu-class24, cpu-text, cpu-first-frame, cpu-first-frame-moves, cpu-trajectory, cpu-pixel, gpu, cpu-trajectory-t1, cpu-text-t1, auto"):
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


def test_cpu_preset_is_latent_over_eight_distinct_motions():
    from viddiff_mini.data.synthetic import CLASS_SPECS
    from viddiff_mini.latent import data_shape
    cfg = get_preset("cpu")
    assert cfg.latent == "msh-ae" and cfg.num_classes == len(cfg.classes) == 8
    # one class per motion program/option: no two classes differ only by the object's shape
    motions = {(CLASS_SPECS[k][1], repr(CLASS_SPECS[k][2])) for k in cfg.class_ids()}
    assert len(motions) == 8
    assert data_shape(cfg) == (8, 8, 16, 16)        # the shipped autoencoder's latent


def test_sampling_guidance_is_the_runs_unless_given_and_none_at_scale_one():
    cfg = get_preset("tiny", guidance=3.0)
    assert cfg.sampling_guidance() == 3.0 and cfg.sampling_guidance(5.0) == 5.0
    assert cfg.sampling_guidance(1.0) is None and cfg.sampling_guidance(1) is None
    assert get_preset("tiny", guidance=1.0).sampling_guidance() is None
    assert cfg.sampling_guidance({"text": 2.0}) == {"text": 2.0}


def test_t1_presets_are_their_recipes_in_the_every_frame_latent_space():
    from viddiff_mini import pretrained
    from viddiff_mini.latent import load_latent

    for base in ("cpu-trajectory", "cpu-text"):
        t1, ref = get_preset(f"{base}-t1"), get_preset(base)
        assert t1.latent == "msh-ae-t1" and ref.latent == "msh-ae"
        assert {**t1.to_dict(), "latent": "msh-ae", "preset": base} == ref.to_dict(), base
        assert "msh-ae-t1" in pretrained.names("autoencoder")
        assert load_latent(t1).latent_shape(t1.frames, t1.size) == (8, 16, 16, 16)
