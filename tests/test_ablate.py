"""Tests for viddiff_mini.ablate (``viddiff ablate``)."""

import json

import pytest

from viddiff_mini import ablate
from viddiff_mini.ablate import PRESETS, VARIANTS, markdown_table, match_width, run_ablation


@pytest.fixture
def no_probe(monkeypatch, tmp_path):
    import viddiff_mini.metrics.probe as probe

    monkeypatch.setattr(probe, "DEFAULT_PROBE", tmp_path / "missing" / "probe.pt")


@pytest.fixture
def tiny_probe(monkeypatch, tmp_path):
    import viddiff_mini.metrics.probe as probe

    path = tmp_path / "probe.pt"
    cfg = probe.ProbeConfig(num_classes=101, frames=4, size=16, width=4, feature_dim=8)
    probe.save_probe(probe.Probe(cfg), path)
    monkeypatch.setattr(probe, "DEFAULT_PROBE", path)


def test_tiny_two_variants_write_json_markdown_plot(tmp_path, tiny_probe):
    out = tmp_path / "abl"
    res = run_ablation("tiny", ["conv:pseudo3d", "model:dit"], out, progress=False)
    assert [r["variant"] for r in res["rows"]] == ["conv:pseudo3d", "model:dit"]
    for r in res["rows"]:
        assert abs(r["param_ratio"] - 1) <= 0.1, r
        assert r["flops_per_clip"] > 0 and r["peak_train_bytes"] > 0 and r["clips_per_s"] > 0
        assert r["eval_loss"] > 0 and r["train_loss"] > 0 and not r["nonfinite"]
        assert 0.0 <= r["probe_accuracy"] <= 1.0
    assert 0.0 <= res["probe_real_accuracy"] <= 1.0
    assert any("real held-out clips at 4x16x16" in n for n in res["notes"])
    data = json.loads((out / "ablation.json").read_text())
    assert data["config"]["frames"] == PRESETS["tiny"].frames and len(data["rows"]) == 2
    md = (out / "ablation.md").read_text()
    assert "| conv:pseudo3d | unet3d |" in md and "model:dit" in md
    assert "% ±" in md and "binomial standard error" in md   # the probe column's noise
    assert (out / "ablation.png").stat().st_size > 1000


def test_no_probe_reports_na_and_same_config_trains_once(no_probe):
    res = run_ablation("tiny", ["model:dit"], None, steps=2, progress=False)
    assert res["rows"][0]["probe_accuracy"] is None and res["probe_real_accuracy"] is None
    assert any("probe accuracy n/a" in n for n in res["notes"])
    assert "n/a" in markdown_table(res)


def test_identical_configurations_are_trained_once(no_probe, monkeypatch):
    calls = []
    real = ablate.train_variant

    def spy(name, *args, **kwargs):
        calls.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ablate, "train_variant", spy)
    res = run_ablation("tiny", ["conv:2plus1d", "model:unet3d"], None, steps=1, progress=False)
    assert calls == ["conv:2plus1d"]  # model:unet3d is the same U-Net (all defaults)
    assert res["rows"][1]["same_as"] == "conv:2plus1d"


@pytest.mark.parametrize("name", ["conv:full3d", "conv:pseudo3d", "temporal:recurrent",
                                  "temporal:bidirectional", "model:dit", "model:lightweight"])
def test_width_matching_within_ten_percent(name):
    m = match_width(name, PRESETS["tiny"])
    assert abs(m["ratio"] - 1) <= 0.1, m
    assert (m["hidden"] is not None) == (name in ablate.FINE_KNOBS)


@pytest.mark.parametrize("preset", ["cpu", "cpu-latent", "gpu"])
def test_every_variant_of_the_real_presets_is_matched_within_ten_percent(preset):
    for name in VARIANTS:  # parameter counts on the meta device: no memory, no training
        m = match_width(name, PRESETS[preset])
        assert abs(m["ratio"] - 1) <= 0.1, (name, m)


def _latent_preset(**over):
    base = dict(frames=16, size=32, num_classes=2, clips=4, eval_clips=2, batch=2, steps=2,
                lr=1e-3, target_params=40_000,
                unet=dict(channel_mults=(1, 2), attn_levels=(1,), heads=1),
                dit=dict(depth=2, heads=1, patch=(1, 2, 2)), sample_n=2, sample_steps=2,
                latent="msh-ae", classes=("MoveRightSquare", "BounceSquare"), object_weight=9.0)
    return ablate.AblationPreset(**(base | over))


def test_latent_route_trains_on_latents_of_the_named_classes_and_probes_decoded(tiny_probe):
    import torch

    from viddiff_mini.data.synthetic import CLASS_NAMES

    cfg = _latent_preset()
    assert ablate.data_shape(cfg) == (8, 8, 16, 16)          # msh-ae: 2x in time and per side
    data = ablate.load_subset(cfg, 0, torch.device("cpu"))
    assert data["video"].shape[1:] == (8, 8, 16, 16) and data["eval_pixels"].shape[1:] == \
        (3, 16, 32, 32)
    assert data["class_ids"] == [CLASS_NAMES.index("MoveRightSquare"),
                                 CLASS_NAMES.index("BounceSquare")]
    assert set(data["label"].tolist()) <= {0, 1}              # run labels, not data-set ids
    w = data["weight"]                                        # objects weigh more, mean 1
    assert w.shape == (4, 1, 8, 16, 16) and torch.allclose(w.mean(dim=(1, 2, 3, 4)),
                                                           torch.ones(4))
    assert (w.amax(dim=(1, 2, 3, 4)) > 2 * w.amin(dim=(1, 2, 3, 4))).all()
    _, kw = ablate.variant_kwargs("model:dit", cfg, 8)
    assert kw["in_channels"] == 8 and kw["frames"] == 8 and kw["image_size"] == 16
    res = run_ablation(cfg, ["conv:2plus1d", "model:dit"], None, progress=False)
    for r in res["rows"]:   # the probe saw decoded pixels (an 8-channel latent would raise)
        assert 0.0 <= r["probe_accuracy"] <= 1.0 and not r["nonfinite"]
        assert r["train_seconds"] > 0 and r["eval_seconds"] > 0
    assert any("latent route" in n and "msh-ae" in n for n in res["notes"])
    assert any("argmax over the 2 run classes" in n for n in res["notes"])


def test_latent_preset_with_wrong_classes_is_refused():
    with pytest.raises(ValueError, match="NoSuchClass"):
        _latent_preset(classes=("MoveRightSquare", "NoSuchClass")).class_ids()
    with pytest.raises(ValueError, match="must be 2 MovingShapes class names"):
        _latent_preset(classes=("MoveRightSquare",)).class_ids()


def test_all_variants_cover_the_chapter():
    kinds = {v.split(":")[0] for v in VARIANTS}
    assert kinds == {"conv", "attn", "temporal", "model"}
    assert {"model:unet3d", "model:dit", "model:lightweight"} <= set(VARIANTS)


def test_cli_errors_are_clear(tmp_path, capsys):
    from viddiff_mini.cli import main

    assert main(["ablate", "--variants", "conv:nope", "--out", str(tmp_path), "--quiet"]) == 1
    assert "viddiff ablate: --variants: unknown variant(s) ['conv:nope']" in capsys.readouterr().err
    assert main(["ablate", "--preset", "huge", "--out", str(tmp_path), "--quiet"]) == 1
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_interrupted_run_keeps_finished_variants_and_resume_finishes(no_probe, monkeypatch,
                                                                     tmp_path):
    out, names = tmp_path / "abl", ["conv:pseudo3d", "model:dit"]
    real, calls = ablate.train_variant, []

    def dies_on_dit(name, *args, **kwargs):
        calls.append(name)
        if name == "model:dit":
            raise KeyboardInterrupt  # the user pressed Ctrl-C during the second variant
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ablate, "train_variant", dies_on_dit)
    with pytest.raises(KeyboardInterrupt):
        run_ablation("tiny", names, out, steps=2, progress=False)
    kept = json.loads((out / "ablation.json").read_text())
    assert [r["variant"] for r in kept["rows"]] == ["conv:pseudo3d"] and not kept["complete"]
    assert "Partial: 1 of 2 variants" in (out / "ablation.md").read_text()

    with pytest.raises(FileExistsError, match="--resume"):  # never overwritten silently
        run_ablation("tiny", names, out, steps=2, progress=False)
    with pytest.raises(ValueError, match="steps: 2 -> 3"):   # a different config is refused
        run_ablation("tiny", names, out, steps=3, progress=False, resume=True)

    calls.clear()
    monkeypatch.setattr(ablate, "train_variant", lambda name, *a, **k: (calls.append(name),
                                                                        real(name, *a, **k))[1])
    res = run_ablation("tiny", names, out, steps=2, progress=False, resume=True)
    assert calls == ["model:dit"] and res["complete"]
    assert res["rows"][0] == kept["rows"][0]
    assert json.loads((out / "ablation.json").read_text())["complete"]
    run_ablation("tiny", names[:1], out, steps=2, progress=False, force=True)
    assert calls == ["model:dit", "conv:pseudo3d"]


def test_cli_refuses_to_overwrite_a_report(tmp_path, capsys, no_probe):
    from viddiff_mini.cli import main

    (tmp_path / "ablation.json").write_text("{}")
    assert main(["ablate", "--out", str(tmp_path), "--quiet", "--steps", "1"]) == 1
    assert "ablation.json exists" in capsys.readouterr().err
    assert main(["ablate", "--out", str(tmp_path), "--quiet", "--resume"]) == 1
    assert "is not an ablation report" in capsys.readouterr().err
