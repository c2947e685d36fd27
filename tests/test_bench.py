"""``viddiff bench`` on CPU at tiny shapes: the commands run and their figures are coherent.

Speed itself is not asserted (that is what the benchmark is for); these tests check that the
numbers are measured and consistent with each other.
"""

import json

import pytest
import torch

from viddiff_mini.benchmarks import common
from viddiff_mini.benchmarks.peers import _ours_unet, bench_peers, match_width, param_count
from viddiff_mini.benchmarks.train_step import bench_config, bench_train
from viddiff_mini.cli import main


def test_bench_train_reports_consistent_figures():
    cfg = bench_config("tiny", batch=2)
    r = bench_train(cfg, steps=2, warmup=1, device="cpu")
    assert r["clips_per_s"] == pytest.approx(2 / r["step_s"])
    assert r["flops_per_step"] > 0 and r["params"] > 0
    assert r["mfu"] is None and "CPU" in r["mfu_note"]  # no peak defined on CPU
    assert len(r["times_s"]) == 2
    assert min(r["times_s"]) - 1e-6 <= r["step_s"] <= max(r["times_s"]) + 1e-6  # a median


def test_flop_count_is_linear_in_batch_and_matches_a_linear_layer():
    lin = torch.nn.Linear(8, 4)
    x = torch.randn(3, 8)
    assert common.count_flops(lambda: lin(x)) == 2 * 3 * 8 * 4


def test_time_calls_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        common.time_calls(lambda: None, 0, 0, torch.device("cpu"))


def test_peer_matching_picks_the_closest_width():
    cfg = bench_config("tiny")
    ours = _ours_unet(cfg)
    target = param_count(ours.build, ours.widths[0])
    width, n = match_width(ours, target)
    assert width == ours.widths[0] and n == target


def test_bench_peers_has_our_rows_and_names_skipped_peers():
    cfg = bench_config("tiny", batch=1, frames=4, size=16)
    r = bench_peers(cfg, steps=1, warmup=0, device="cpu")
    names = [row["name"] for row in r["rows"]]
    assert names[:2] == ["viddiff_mini UNet3D", "viddiff_mini VideoDiT"]
    for why in r["skipped"].values():  # peers not installed here: said, not hidden
        assert "not importable" in why
    # every peer is either measured or skipped with a reason
    measured = {row["library"] for row in r["rows"]}
    assert len(r["rows"]) + len(r["skipped"]) == 2 + 3 and "viddiff_mini" in measured
    with pytest.raises(ValueError, match="unknown peer"):
        bench_peers(cfg, steps=1, warmup=0, device="cpu", peers=["nope"], include_dit=False)


def test_cli_bench_writes_json(tmp_path, capsys):
    rc = main(["bench", "data", "--preset", "tiny", "--batch", "2", "--steps", "2", "--warmup",
               "1", "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "data.json").read_text())
    assert data["ratio"] == pytest.approx(data["render_clips_per_s"] / data["train_clips_per_s"])
    rc = main(["bench", "sample", "--preset", "tiny", "--batch", "2", "--steps", "2",
               "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 0 and json.loads((tmp_path / "sample.json").read_text())["clips_per_s"] > 0


def test_cli_bench_constraints_pins_the_installed_torch(capsys):
    assert main(["bench", "constraints"]) == 0
    out = capsys.readouterr().out
    assert f"torch=={torch.__version__}" in out


def test_cli_bench_bad_input_is_named(capsys):
    assert main(["bench", "train", "--preset", "tiny", "--batch", "0", "--device", "cpu"]) == 2
    assert "--batch" in capsys.readouterr().err


def test_bench_train_audits_sdpa_shapes_at_the_real_batch():
    """The kernel check sees the benchmark's real shapes (not batch 1): walked on meta."""
    r = bench_train(bench_config("tiny", batch=2), steps=1, warmup=0, device="cpu")
    assert r["sdpa_shapes"]["calls"] > 0 and r["sdpa_shapes"]["violations"] == []
    from viddiff_mini.train import build_model_for
    cfg = bench_config("gpu")
    audit = common.sdpa_audit(lambda: build_model_for(cfg),
                              lambda m, x, t, y: m(x, t, {"label": y}),
                              cfg.batch_size, cfg.frames, cfg.size)
    assert audit["violations"] == [] and audit["max_batch"] <= 65_535
    assert audit["max_footprint_of_2^31"] < 1


@pytest.mark.parametrize("model", ["unet3d", "dit"])
def test_gpu_preset_fits_60_gib_and_20_minutes_make_5_passes(model):
    """The gpu preset is sized by the memory model (FakeTensorMode, no GPU): its estimated
    peak training memory stays within 60 GiB (an 80 GB H100 with headroom), and 20 minutes
    of an H100 at 20% MFU run its max_steps and see >= 5 passes over the fold-1 train split."""
    from viddiff_mini.benchmarks.memory import memory_model, steps_for_budget

    cfg = bench_config("gpu", model=model)
    mem = memory_model(cfg)
    assert 1.0 < mem["estimate_gib"] <= 60.0, mem
    assert mem["fits"]["H100 80GB"]["largest_batch"] >= cfg.batch_size
    budget = steps_for_budget(cfg, minutes=20, mfu=0.20, peak_tflops=989.0)
    if model == "unet3d":  # the preset's own model sets max_steps
        assert cfg.max_steps <= budget["steps"] and cfg.warmup_steps <= 0.1 * cfg.max_steps
        assert cfg.max_steps * cfg.batch_size / budget["train_clips"] >= 5
    assert budget["passes"] >= 5
    # without checkpointing the same batch would not fit: the preset needs it
    off = memory_model(bench_config("gpu", model=model, grad_checkpoint=False))
    assert off["estimate_gib"] > 60.0


def test_memory_model_counts_saved_activations_linearly():
    from viddiff_mini.benchmarks.memory import largest_batch, saved_activations

    cfg = bench_config("tiny")
    one, two, four = (saved_activations(cfg, b)["saved_bytes"] for b in (1, 2, 4))
    assert one > 0 and four - two == pytest.approx(2 * (two - one), rel=0.02)
    assert largest_batch(lambda b: 10.0 + b, 20.0) == 10
    assert largest_batch(lambda b: 30.0, 20.0) == 0


def test_cli_bench_memory(capsys):
    assert main(["bench", "memory", "--preset", "tiny", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "estimate" in out and "H100 80GB: largest batch" in out and "passes" in out


def test_bench_all_keeps_every_number_when_one_benchmark_crashes(tmp_path, monkeypatch, capsys):
    """A crash (here: an OOM in sampling) is recorded in its own JSON; everything measured
    before and after it is written as soon as it finishes."""
    from viddiff_mini.benchmarks import sampling

    def oom(*a, **k):
        raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")

    monkeypatch.setattr(sampling, "bench_sample", oom)
    rc = main(["bench", "all", "--preset", "tiny", "--batch", "1", "--steps", "1", "--warmup",
               "0", "--device", "cpu", "--out", str(tmp_path)])
    assert rc == 1  # something failed, and says so
    files = {p.stem for p in tmp_path.glob("*.json")}
    assert {"memory", "train_unet3d", "train_dit", "data", "sample", "peers"} <= files
    sample = json.loads((tmp_path / "sample.json").read_text())
    assert "out of memory" in sample["error"]
    train = json.loads((tmp_path / "train_unet3d.json").read_text())
    assert train["clips_per_s"] > 0 and train["compile"] is False  # eager first
    assert "FAILED" in capsys.readouterr().out


def test_peer_rows_are_guarded_and_only_matched_peers_count(monkeypatch):
    from viddiff_mini.benchmarks import peers

    def broken(cfg):  # builds (its size is matched on the meta device), crashes when run
        def build(width):
            if torch.empty(0).device.type != "meta":
                raise RuntimeError("CUDA error: invalid configuration argument")
            return torch.nn.Conv3d(3, 3, 1)
        return peers.Candidate("broken peer", "broken", build, None, [8, 16])

    def small(cfg):  # a peer far below the target size: measured, flagged, never "fastest"
        return peers.Candidate("small peer", "small", lambda w: torch.nn.Conv3d(3, 3, 1),
                               lambda m, x, t, y: m(x), [1])

    monkeypatch.setitem(peers.PEERS, "broken", broken)
    monkeypatch.setitem(peers.PEERS, "small", small)
    cfg = bench_config("tiny", batch=1, frames=4, size=16)
    seen = []
    r = peers.bench_peers(cfg, steps=1, warmup=0, device="cpu", peers=["broken", "small"],
                          include_dit=False, on_row=lambda res: seen.append(len(res["rows"])))
    assert seen == [1, 2, 3]  # reported after every row
    rows = {row["name"]: row for row in r["rows"]}
    assert "invalid configuration" in rows["broken peer"]["error"]
    assert rows["small peer"]["matched"] is False and rows["small peer"]["clips_per_s"] > 0
    assert r["fastest_peer"] is None and rows["viddiff_mini UNet3D"]["ratio_to_fastest_peer"] is None
    ours = rows["viddiff_mini UNet3D"]
    assert ours["flops_per_step"] > 0 and ours["mfu"] is None  # FLOPs reported; no MFU on CPU
    assert "failed" in peers.peers_table(r)


def test_make_a_video_flash_is_enabled_on_any_gpu():
    from viddiff_mini.benchmarks.peers import enable_peer_flash

    class Attend(torch.nn.Module):  # make-a-video's Attend after construction on an H100
        def __init__(self):
            super().__init__()
            self.flash = True
            self.cpu_config = (True, True, True)
            self.cuda_config = (False, True, True)

    m = torch.nn.Sequential(Attend())
    assert enable_peer_flash(m)[0].cuda_config == (True, True, True)


@pytest.mark.slow
def test_gpu_check_script_dry_run_end_to_end(tmp_path):
    """scripts/gpu_check.sh --dry-run: the same stages as on a GPU (smoke step, each
    benchmark in its own process, a training run with a mid-run --resume, eval, peers, the
    compiled row), on CPU at the tiny preset; every stage succeeds and summary.md is written."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "check"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(root / "scripts" / "gpu_check.sh"), "--dry-run",
                           "--skip-install", "--budget", "1200", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=1500)
    stages = (out / "stages.tsv").read_text().splitlines()[1:]
    rcs = {line.split("\t")[0]: line.split("\t")[1] for line in stages}
    assert proc.returncode == 0, (rcs, proc.stdout[-3000:], proc.stderr[-2000:])
    assert set(rcs) == {"device", "smoke", "memory", "train_unet3d", "train_dit", "sample",
                        "data", "run", "resume", "eval", "peers", "compiled"}
    assert set(rcs.values()) == {"0"}
    for name in ("smoke", "memory", "train_unet3d", "train_dit", "sample", "data", "peers"):
        assert (out / "bench" / f"{name}.json").is_file(), name
    summary = (out / "summary.md").read_text()
    assert "## Smoke step" in summary and "## Training run" in summary and "8 steps" in summary
    assert json.loads((out / "run" / "summary.json").read_text())["step"] == 8


def test_bench_train_counts_model_flops_with_checkpointing():
    """MFU's convention: the recomputed forward of gradient checkpointing is not counted."""
    plain = bench_train(bench_config("tiny", batch=1), steps=1, warmup=0, device="cpu",
                        sdpa_check=False)
    ckpt = bench_train(bench_config("tiny", batch=1, grad_checkpoint=True), steps=1, warmup=0,
                       device="cpu", sdpa_check=False)
    assert ckpt["grad_checkpoint"] and ckpt["flops_per_step"] == plain["flops_per_step"]
