"""The trainer: end to end on the tiny preset, exact resume, NaN guard, run-folder rules."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from viddiff_mini.config import get_preset
from viddiff_mini.train import (
    CKPT_NAME,
    NonFiniteLossError,
    StepBatches,
    load_run,
    train,
)
from viddiff_mini.utils import safe_torch_load


def tiny(**over):
    # even smaller than the preset: these tests are about the loop, not the model
    base = dict(max_steps=8, log_every=1, ckpt_every=4, sample_n=0, batch_size=4)
    base.update(over)
    return get_preset("tiny", **base)


def losses(run):
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_writes_checkpoint_metrics_plot_and_samples(tmp_path):
    cfg = tiny(sample_n=2, sample_steps=2)
    summary = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert summary["step"] == 8 and summary["stop_reason"] == "max_steps"
    assert (run / CKPT_NAME).is_file() and (run / "loss.png").stat().st_size > 1000
    assert (run / "samples" / "final.gif").stat().st_size > 100
    rows = losses(run)
    assert len(rows) == 8 and all(r == r and r > 0 for r in rows)
    state = safe_torch_load(run / CKPT_NAME)
    assert set(state) >= {"config", "model", "ema", "optimizer", "step", "rng"}
    assert state["step"] == 8


def test_resume_reproduces_uninterrupted_losses_bit_for_bit(tmp_path):
    full = tiny(max_steps=8)
    train(full, tmp_path / "a", progress=False)
    # interrupted after 4 steps (a checkpoint is written at step 4), then resumed to 8
    train(replace(full, max_steps=4), tmp_path / "b", progress=False)
    train(full, tmp_path / "b", resume=True, progress=False)
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    a = safe_torch_load(tmp_path / "a" / CKPT_NAME)
    b = safe_torch_load(tmp_path / "b" / CKPT_NAME)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
        assert torch.equal(a["ema"][k], b["ema"][k]), k


def test_a_run_trained_in_parts_reports_its_total_time_and_its_last_loss(tmp_path):
    full = tiny(max_steps=8)
    first = train(replace(full, max_steps=4), tmp_path / "b", progress=False)
    second = train(full, tmp_path / "b", resume=True, progress=False)
    state = safe_torch_load(tmp_path / "b" / CKPT_NAME)
    assert second["train_seconds_total"] == pytest.approx(state["train_seconds"], abs=0.5)
    assert second["train_seconds_total"] > first["train_seconds_total"] > 0
    assert second["train_seconds_total"] > second["elapsed_s"]  # the first part counts too
    # resuming a finished run trains nothing and keeps the last logged loss, not NaN
    again = train(full, tmp_path / "b", resume=True, progress=False)
    assert again["step"] == 8 and again["final_loss"] == losses(tmp_path / "b")[-1]
    assert again["train_seconds_total"] >= state["train_seconds"]


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    run = tmp_path / "run"
    cfg = tiny(max_steps=4)
    train(cfg, run, progress=False)
    good = safe_torch_load(run / CKPT_NAME)
    # an absurd learning rate blows the weights up to inf within a few steps
    bad = replace(cfg, max_steps=40, lr=1e30, warmup_steps=0, grad_clip=0.0)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train(bad, run, force=True, progress=False)
    # --force removed the old checkpoint; the new run only ever saved finite weights
    if (run / CKPT_NAME).exists():
        state = safe_torch_load(run / CKPT_NAME)
        assert all(torch.isfinite(v).all() for v in state["model"].values()
                   if v.is_floating_point())
    assert good["step"] == 4


def test_existing_run_folder_is_refused_without_resume_or_force(tmp_path):
    cfg = tiny(max_steps=2)
    train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg, tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(replace(cfg, lr=5e-3), tmp_path / "run", resume=True, progress=False)


def test_a_run_from_before_a_new_config_field_still_resumes(tmp_path):
    # runs saved before TrainConfig gained a field (virtual_pans, 2026-12-04) lack it in
    # config.json; they had its default, so --resume continues them
    import json
    train(tiny(max_steps=2), tmp_path / "run", progress=False)
    path = tmp_path / "run" / "config.json"
    old = json.loads(path.read_text())
    del old["virtual_pans"]
    path.write_text(json.dumps(old))
    assert train(tiny(max_steps=3), tmp_path / "run", resume=True, progress=False)["step"] == 3
    with pytest.raises(ValueError, match="virtual_pans"):
        path.write_text(json.dumps(old))
        train(tiny(max_steps=4, virtual_pans=1), tmp_path / "run", resume=True, progress=False)


def test_load_run_gives_ema_model_that_samples(tmp_path):
    train(tiny(max_steps=2), tmp_path / "run", progress=False)
    model, diffusion, cfg = load_run(tmp_path / "run")
    assert not model.training and cfg.frames == 8
    x = diffusion.sample(model, (2, 3, cfg.frames, cfg.size, cfg.size),
                         cond={"label": torch.tensor([0, 1])}, steps=2,
                         generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 8, 16, 16) and x.abs().max() <= 1


def test_step_batches_are_a_pure_function_of_seed_and_step():
    pool = list(range(100, 200))
    a = StepBatches(pool, 6, seed=3, start=0, stop=10)
    b = StepBatches(pool, 6, seed=3, start=5, stop=10)
    assert list(a)[5:] == list(b)
    # two ranks' stripes together are the single-process batch
    r0 = StepBatches(pool, 6, seed=3, start=0, stop=3, rank=0, world=2)
    r1 = StepBatches(pool, 6, seed=3, start=0, stop=3, rank=1, world=2)
    for full, x, y in zip(a, r0, r1):
        assert sorted(full) == sorted(x + y)


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="viddiff train"):
        load_run(tmp_path / "nothing")


def test_ema_decay_warms_up_then_caps():
    from viddiff_mini.train import ema_decay_at

    cfg = get_preset("tiny", ema_decay=0.999, ema_start=5)
    assert ema_decay_at(cfg, 0) == 0.0 and ema_decay_at(cfg, 4) == 0.0  # copies the model
    assert ema_decay_at(cfg, 5) == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    decays = [ema_decay_at(cfg, s) for s in range(5, 20000, 97)]
    assert all(a <= b for a, b in zip(decays, decays[1:])) and decays[-1] == 0.999
