"""The probe classifier: shapes, resizing, save/load, training loop, clear errors."""

import pytest
import torch

from viddiff_mini.metrics.probe import (
    Probe,
    ProbeConfig,
    load_probe,
    probe_accuracy,
    save_probe,
    train_probe,
)


def test_probe_accepts_any_clip_size_and_gives_logits_and_features():
    probe = Probe(ProbeConfig(num_classes=5)).eval()
    for shape in [(2, 3, 16, 32, 32), (2, 3, 8, 64, 64), (1, 3, 20, 48, 40)]:
        x = torch.rand(shape) * 2 - 1
        assert probe(x).shape == (shape[0], 5)
        assert probe.features(x).shape == (shape[0], probe.cfg.feature_dim)


def test_probe_rejects_a_non_video():
    with pytest.raises(ValueError, match=r"\(b, c, t, h, w\)"):
        Probe()(torch.zeros(3, 32, 32))


def test_save_load_round_trip(tmp_path):
    probe = Probe(ProbeConfig(num_classes=3)).eval()
    save_probe(probe, tmp_path / "p.pt", meta={"accuracy": 0.5})
    again = load_probe(tmp_path / "p.pt")
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    assert torch.allclose(probe(x), again(x)) and again.meta["accuracy"] == 0.5


def test_missing_or_foreign_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-probe"):
        load_probe(tmp_path / "nope.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a probe file"):
        load_probe(tmp_path / "other.pt")


def test_accuracy_counts_per_class():
    class Fixed(torch.nn.Module):  # predicts class 0 for everything
        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.tensor([[1.0, 0.0]]).expand(len(x), 2)

    r = probe_accuracy(Fixed(), torch.zeros(4, 3, 2, 8, 8), torch.tensor([0, 0, 1, 1]))
    assert r["accuracy"] == 0.5 and r["per_class"] == {0: 1.0, 1: 0.0} and r["n"] == 4


def test_a_few_training_steps_run_evaluate_and_write_the_file(tmp_path):
    out = tmp_path / "probe.pt"
    probe, result = train_probe(out, steps=4, batch=4, num_classes=3, size=32, eval_n=6,
                                progress=False, device="cpu")
    assert out.is_file() and result["n"] == 6 and 0.0 <= result["accuracy"] <= 1.0
    assert load_probe(out).cfg.num_classes == 3
