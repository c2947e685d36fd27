"""Shipped pretrained models: every one loads and samples; cards, hashes, packing, CLI."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from viddiff_mini import pretrained
from viddiff_mini.config import get_preset
from viddiff_mini.train import load_run, sample_grid, train


@pytest.mark.parametrize("name, latent", [("msh-ae", (8, 8, 16, 16)),         # 2x in time
                                          ("msh-ae-t1", (8, 16, 16, 16))])   # every frame
def test_the_latent_autoencoders_ship_and_reconstruct(name, latent):
    assert name in pretrained.names("autoencoder")
    ae = pretrained.load(name)
    assert ae.meta["frames"] == 16 and ae.meta["size"] == 32
    x = torch.rand(1, 3, 16, 32, 32) * 2 - 1
    z = ae.encode(x)
    assert tuple(z.shape) == (1, *ae.latent_shape(16, 32)) == (1, *latent)
    assert tuple(ae.decode(z).shape) == tuple(x.shape)


@pytest.mark.parametrize("name", pretrained.names("generator"))
def test_every_shipped_generator_loads_and_samples_one_clip(name):
    model, diffusion, cfg = pretrained.load(name)
    card = pretrained.card(name)
    assert (cfg.frames, cfg.size) == (card["frames"], card["size"])
    x = sample_grid(model, diffusion, cfg, "cpu", 1, seed=0, steps=2)
    assert tuple(x.shape) == (1, 3, cfg.frames, cfg.size, cfg.size)
    assert torch.isfinite(x).all()


def test_cards_describe_what_a_user_needs():
    for name in pretrained.names():
        card = pretrained.card(name)
        for key in ("kind", "file", "sha256", "recipe", "cpu_time", "machine", "metrics"):
            assert card.get(key) not in (None, "", {}), f"{name}: card lacks {key!r}"
        if card["kind"] == "generator":   # the settings scripts/reproduce_cards.py re-runs
            assert {"n_per_class", "steps", "guidance", "seed"} <= set(card.get("eval", {}))
    total = sum(pretrained.card(n)["bytes"] for n in pretrained.names())
    assert total <= 30e6, f"shipped weights take {total / 1e6:.1f} MB (budget 30 MB)"


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown; shipped models: .*msh-ae"):
        pretrained.card("msh-nope")
    with pytest.raises(FileNotFoundError, match="Pretrained generators"):
        load_run("msh-nope")


@pytest.fixture()
def packed(tmp_path, monkeypatch):
    """A tiny generator packed into a private pretrained folder."""
    cfg = get_preset("tiny", max_steps=2, sample_n=0, batch_size=2)
    train(cfg, tmp_path / "run", progress=False)
    dest = tmp_path / "shipped"
    dest.mkdir()
    card = pretrained.pack(tmp_path / "run", "tiny-gen", {"recipe": "viddiff train --preset "
                                                          "tiny --steps 2"}, half=True, dest=dest)
    monkeypatch.setattr(pretrained, "HERE", dest)
    return dest, card


def test_pack_then_load_by_name(packed):
    dest, card = packed
    assert card["dtype"] == "float16" and card["steps"] == 2 and card["classes"] == 4
    model, diffusion, cfg = load_run("tiny-gen")      # a name wherever a run folder goes
    x = sample_grid(model, diffusion, cfg, "cpu", 1, seed=0, steps=2)
    assert tuple(x.shape) == (1, 3, 8, 16, 16)
    assert next(model.parameters()).dtype == torch.float32   # fp16 on disk, fp32 in use


def test_weights_that_do_not_match_their_card_are_refused(packed):
    dest, _ = packed
    path = dest / "tiny-gen.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 .* but its card says"):
        pretrained.load("tiny-gen")


def test_cli_lists_and_shows_cards(packed, capsys):
    ns = argparse.Namespace(action="list", args=[], kind="generator", card=None, half=False)
    assert pretrained.main(ns) == 0
    assert "tiny-gen" in capsys.readouterr().out
    ns.action, ns.args = "show", ["tiny-gen"]
    assert pretrained.main(ns) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "tiny-gen"
    ns.args = ["missing"]
    assert pretrained.main(ns) == 1
    assert "shipped models: tiny-gen" in capsys.readouterr().err


def test_reproduce_script_remeasures_every_card_metric(tmp_path):
    # plumbing only (--quick: 1 sample per class, 2 sampler steps): every numeric metric on
    # every card is found in the re-measured report, so the full run can compare them all
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "rep.json"
    subprocess.run([sys.executable, str(root / "scripts" / "reproduce_cards.py"), "--quick",
                    "--out", str(out)], check=True, capture_output=True, timeout=600)
    rows = json.loads(out.read_text())["rows"]
    for name in pretrained.names():
        numeric = {k for k, v in pretrained.card(name).get("metrics", {}).items()
                   if isinstance(v, (int, float))}
        assert numeric and numeric == {r["metric"] for r in rows if r["name"] == name}, name
