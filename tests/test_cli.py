"""The ``viddiff`` command: real subprocesses, real exit codes, clear messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def viddiff(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "viddiff_mini", *args], capture_output=True,
                          text=True, env=ENV, cwd=cwd, timeout=300)


def test_help_lists_every_command():
    r = viddiff("--help")
    assert r.returncode == 0
    for name in ("train", "sample", "eval", "bench", "data", "ablate", "assign", "grade"):
        assert name in r.stdout


def test_unknown_command_preset_and_data_spec_are_named():
    r = viddiff("fly")
    assert r.returncode == 2 and "unknown command 'fly'" in r.stderr
    r = viddiff("train", "--preset", "huge", "--out", "x")
    assert r.returncode == 1 and "valid presets: tiny, cpu, cpu-class24, cpu-text, cpu-first-frame, cpu-first-frame-moves, cpu-trajectory, cpu-pixel, gpu, cpu-trajectory-t1, cpu-text-t1, auto" in r.stderr
    r = viddiff("train", "--data", "kinetics", "--out", "x")
    assert r.returncode == 1 and "shapes | ucf101:PATH | folder:PATH" in r.stderr


@pytest.mark.slow
def test_tiny_train_sample_eval_end_to_end(tmp_path):
    """train -> sample -> eval through the CLI, as a user would run it."""
    run = tmp_path / "run"
    r = viddiff("train", "--preset", "tiny", "--steps", "6", "--out", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout[: r.stdout.rindex("}") + 1])
    assert summary["step"] == 6
    r = viddiff("train", "--preset", "tiny", "--steps", "6", "--out", str(run), "--quiet")
    assert r.returncode == 1 and "--resume" in r.stderr

    gif = tmp_path / "x.gif"
    r = viddiff("sample", str(run), "--label", "1", "--n", "2", "--steps", "3", "--out", str(gif))
    assert r.returncode == 0, r.stderr
    assert gif.stat().st_size > 100
    r = viddiff("sample", str(run), "--class", "NoSuchClass", "--out", str(gif))
    assert r.returncode == 1 and "not a class of this run" in r.stderr

    # a probe trained for a handful of steps: the point is the plumbing, not the accuracy
    probe = tmp_path / "probe.pt"
    r = viddiff("eval", "train-probe", "--out", str(probe), "--steps", "3", "--batch", "4",
                "--classes", "4", "--eval-n", "8")
    assert r.returncode == 0, r.stderr
    r = viddiff("eval", str(run), "--probe", str(probe), "--n-per-class", "1", "--steps", "2",
                "--fvd-protocol", "msh101-dense-v1")
    assert r.returncode == 0, r.stderr
    assert "fvd_reliable" in r.stderr and "--n-per-class" in r.stderr   # says how to fix it
    # 4 samples for 128 dims: 33 per class; the densest protocol is already in use
    assert "--n-per-class 33" in r.stderr and "--fvd-protocol" not in r.stderr
    report = json.loads((run / "eval.json").read_text())
    assert 0.0 <= report["probe_accuracy"] <= 1.0 and report["num_classes"] == 4
    # the stable keys: accuracy in the run's classes, the real-clip ceiling, object checks
    # beside their real yardsticks, FVD-probe flagged when samples < feature dimensions
    for key in ("probe_accuracy_in_run_classes", "real_ceiling", "real_ceiling_in_run_classes",
                "motion_direction_accuracy", "real_motion_direction_accuracy", "colour_drift",
                "real_colour_drift", "mask_persistence", "real_mask_persistence", "fvd_probe",
                "fvd_n_fake", "fvd_feature_dim"):
        assert key in report, key
    assert report["probe_accuracy_in_run_classes"] >= report["probe_accuracy"]
    assert report["fvd_n_fake"] == 4 and report["fvd_reliable"] is False
    # the dense protocol's 20 real clips per class (4 classes), rendered at the run's size
    assert report["fvd_n_real"] == 80 and report["fvd_protocol"].startswith("msh101-dense-v1@")
    assert (run / "eval.png").stat().st_size > 100          # contact sheet of the samples
    r = viddiff("eval", "msh-nope")
    assert r.returncode == 1 and "Pretrained generators" in r.stderr


def test_sample_gives_a_text_model_the_callers_caption_and_names_bad_words(tmp_path):
    run = tmp_path / "run"
    r = viddiff("train", "--preset", "tiny", "--conditions", "text", "--steps", "2",
                "--out", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    gif = tmp_path / "red.gif"
    r = viddiff("sample", str(run), "--text", "a red square moves left then up", "--n", "2",
                "--steps", "2", "--out", str(gif))
    assert r.returncode == 0, r.stderr
    assert gif.stat().st_size > 100
    r = viddiff("sample", str(run), "--text", "a red squirrel moves left", "--out", str(gif))
    assert r.returncode == 1 and "not in the vocabulary: ['squirrel']" in r.stderr
    r = viddiff("sample", "msh-class8", "--text", "a red square", "--out", str(gif))
    assert r.returncode == 1 and "not text-conditioned (its conditions: label)" in r.stderr


def test_sigterm_checkpoints_at_the_current_step_and_the_run_resumes(tmp_path):
    """`kill` (SIGTERM, what a scheduler sends) stops a run like its time limit: the step in
    progress finishes, a checkpoint is written there, the summary says why, exit 0.
    Without the handler the process dies and every step since the last periodic
    checkpoint is lost."""
    import signal
    import time

    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "viddiff_mini", "train", "--preset", "tiny",
                          "--steps", "100000", "--out", str(run), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 240
    metrics = run / "metrics.jsonl"
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 1):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "signal (SIGTERM)", summary
    state = torch.load(run / "checkpoint.pt", weights_only=True, map_location="cpu")
    assert state["step"] == summary["step"] > 0, "checkpointed at the step it stopped on"
    r = viddiff("train", "--preset", "tiny", "--steps", str(summary["step"] + 2), "--out",
                str(run), "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "summary.json").read_text())["step"] == summary["step"] + 2
