"""`viddiff train-ae`: end to end on the tiny preset, exact resume, NaN stop, loading."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from viddiff_mini.train import NonFiniteLossError
from viddiff_mini.train_ae import (
    AE_FILE,
    get_ae_preset,
    load_autoencoder,
    object_weights,
    train_autoencoder,
)
from viddiff_mini.utils import safe_torch_load


def test_tiny_run_writes_autoencoder_with_stats_and_report(tmp_path):
    cfg = get_ae_preset("tiny")
    s = train_autoencoder(cfg, tmp_path / "ae", progress=False)
    assert s["step"] == cfg.max_steps and s["latent_shape"] == [4, 4, 8, 8]
    for key in ("psnr_db", "object_psnr_db", "probe_accuracy_reconstructed",
                "probe_accuracy_real"):
        assert key in s
    ae = load_autoencoder(tmp_path / "ae")
    assert not torch.equal(ae.latent_std, torch.ones(4))     # fitted, not the defaults
    assert ae.meta["frames"] == 8 and ae.meta["size"] == 16
    assert (tmp_path / "ae" / AE_FILE).is_file() and (tmp_path / "ae" / "loss.png").is_file()


def test_resume_continues_exactly(tmp_path):
    cfg = get_ae_preset("tiny", max_steps=4, ckpt_every=2, log_every=1)
    train_autoencoder(cfg, tmp_path / "full", progress=False, evaluate=False)
    train_autoencoder(replace(cfg, max_steps=2), tmp_path / "part", progress=False,
                      evaluate=False)
    train_autoencoder(cfg, tmp_path / "part", resume=True, progress=False, evaluate=False)
    a = safe_torch_load(tmp_path / "full" / "checkpoint.pt")["model"]
    b = safe_torch_load(tmp_path / "part" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_loss_stops_with_last_good_checkpoint(tmp_path):
    cfg = get_ae_preset("tiny", max_steps=6, ckpt_every=1, lr=1e30, grad_clip=0.0,
                        warmup_steps=0)
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        train_autoencoder(cfg, tmp_path / "ae", progress=False, evaluate=False)
    state = safe_torch_load(tmp_path / "ae" / "checkpoint.pt")
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_object_weights_mark_dilated_object_pixels():
    masks = torch.zeros(1, 2, 1, 5, 5, dtype=torch.bool)
    masks[0, 1, 0, 2, 2] = True
    w = object_weights(masks, 9.0)
    assert w[0, 0, 0, 2, 2] == 10.0 and w[0, 0, 0, 1, 1] == 10.0   # the pixel and its ring
    assert w[0, 0, 0, 0, 0] == 1.0 and w.sum() == 25 + 9 * 9


def test_missing_autoencoder_and_bad_preset_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="viddiff train-ae"):
        load_autoencoder(tmp_path)
    with pytest.raises(ValueError, match="valid presets: tiny, cpu"):
        get_ae_preset("huge")


def test_sigterm_stops_with_a_checkpoint_at_that_step(tmp_path):
    """A SIGTERM arriving mid-run (here from a timer thread of this process) ends the loop
    at the current step with a checkpoint there, as the generator trainer does."""
    import os
    import signal
    import threading

    cfg = get_ae_preset("tiny", max_steps=100000, ckpt_every=100000, log_every=1)
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        s = train_autoencoder(cfg, tmp_path / "ae", progress=False, evaluate=False)
    finally:
        timer.cancel()
    assert s["stop_reason"] == "signal (SIGTERM)" and 0 < s["step"] < 100000
    assert safe_torch_load(tmp_path / "ae" / "checkpoint.pt")["step"] == s["step"]
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"
