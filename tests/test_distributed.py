"""Real ``torch.distributed``: 2 gloo processes under torchrun vs 1 process, same global batch.

Each of the 2 ranks trains on its stripe (B/2 clips) of the global batch B, DDP averages the
gradients, so the run must follow the single-process run with batch B: the logged losses
agree within float tolerance (reduction order differs, so not bit for bit). Also checks that
only rank 0 writes the run folder and that a 2-process run resumes, and that a time-limit
stop is agreed by both ranks even when their clocks disagree.
"""

import json
import os
import subprocess
import sys

import pytest

STEPS = 6
COMMON = ["--preset", "tiny", "--steps", str(STEPS), "--quiet"]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", **extra)
    env.pop("WORLD_SIZE", None)
    return env


def _train_1proc(out, *extra):
    cmd = [sys.executable, "-m", "viddiff_mini", "train", *COMMON, "--out", str(out), *extra]
    subprocess.run(cmd, check=True, env=_env(), capture_output=True, timeout=300)


def _train_2proc(out, *extra, env=None, common=COMMON):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "viddiff_mini.cli", "train", *common, "--out", str(out), *extra]
    proc = subprocess.run(cmd, env=env or _env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow
def test_two_gloo_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _train_1proc(one)
    _train_2proc(two)
    a, b = _losses(one), _losses(two)
    assert a.keys() == b.keys() and len(a) >= 2
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), (step, a, b)
    # rank 0 alone writes: one metrics row per logged step, one checkpoint
    assert len((two / "metrics.jsonl").read_text().splitlines()) == len(a)
    assert (two / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_two_process_run_resumes(tmp_path):
    run = tmp_path / "run"
    _train_2proc(run)
    before = _losses(run)
    cmd_more = ["--steps", str(STEPS + 4)]  # later flags win: extend the run by 4 steps
    _train_2proc(run, "--resume", *cmd_more)
    after = _losses(run)
    assert max(after) == STEPS + 4 and all(after[s] == before[s] for s in before)


# Rank 1's clock runs 10,000x fast: it believes the time limit is up after the first step,
# rank 0 (real clock) would train all the steps. Before the stop decision was all-reduced,
# rank 1 left the loop alone and rank 0 waited for it in the next gradient all-reduce until
# the gloo timeout (30 min): a hang. Now both stop together at the first log step.
FAST_CLOCK = """
import os, time
if os.environ.get("RANK") == "1":
    _orig = time.perf_counter
    _base = _orig()
    time.perf_counter = lambda: _base + (_orig() - _base) * 10_000
"""


@pytest.mark.slow
def test_two_ranks_agree_on_a_time_limit_stop(tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAST_CLOCK)
    env = _env(PYTHONPATH=os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")]))
    run = tmp_path / "run"
    # 30 tiny steps take seconds: on its own clock rank 0 would never hit its 1 minute
    _train_2proc(run, "--minutes", "1", env=env,
                 common=["--preset", "tiny", "--steps", "30", "--quiet"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"] == "time_limit"
    assert summary["step"] == 5  # the first log step of the tiny preset (log_every=5)
    assert max(_losses(run)) == 5 and (run / "checkpoint.pt").is_file()


def test_setup_distributed_picks_the_gpu_before_the_process_group(monkeypatch):
    """On CUDA: set_device(LOCAL_RANK) first, then init_process_group("nccl", device_id=...)."""
    import torch

    from viddiff_mini import train

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(train.dist, "is_initialized", lambda: bool(calls and
                                                                   calls[-1][0] == "init"))
    monkeypatch.setattr(train.dist, "init_process_group",
                        lambda backend, **kw: calls.append(("init", backend, kw)))
    monkeypatch.setattr(train.dist, "get_rank", lambda: 1)
    monkeypatch.setattr(train.dist, "get_world_size", lambda: 2)
    rank, world, device = train.setup_distributed()
    assert (rank, world, device) == (1, 2, torch.device("cuda", 1))
    assert calls[0] == ("set_device", 1)
    assert calls[1] == ("init", "nccl", {"device_id": torch.device("cuda", 1)})
