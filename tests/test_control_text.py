"""control/text.py: tokenizer, temporal encoder, alignment, CLIP-style model, caption checks."""

from __future__ import annotations

import math

import pytest
import torch

from viddiff_mini.control import text
from viddiff_mini.data.synthetic import CLASS_NAMES, clip_index_table, render_batch, split_indices


@pytest.fixture(scope="module")
def truth():
    """Test clips of several classes with ground truth (8 frames, 32 px)."""
    return render_batch(split_indices("test")[::211][:24], frames=8, size=32, truth=True)


def test_tokenize_unknown_words_and_empty_caption():
    tok = text.tokenize(["a red ball falls then rolls left", "a zorp moves"])
    assert tok["ids"].shape == (2, 7) and tok["mask"].sum(1).tolist() == [7, 3]
    assert tok["unknown"] == {"zorp"} and tok["ids"][1, 1] == text.default_vocabulary().unk_id
    assert tok["ids"][1, 3:].eq(0).all(), "padding id 0"
    with pytest.raises(ValueError, match="zorp"):
        text.tokenize("a zorp moves", unknown="error")
    for bad in ("", "  ", "!!", []):
        with pytest.raises(ValueError, match="caption"):
            text.tokenize(bad)
    with pytest.raises(TypeError):
        text.tokenize([3])


def test_every_dataset_caption_is_in_the_vocabulary():
    b = render_batch(split_indices("train")[::53], frames=8, size=16, truth=True)
    tok = text.tokenize(b["caption"], unknown="unk")
    assert tok["unknown"] == set(), f"caption words missing from the vocabulary: {tok['unknown']}"


def test_event_indices_follow_time_order():
    assert text.event_indices("a ball falls then rolls".split()) == [0, 0, 0, 1, 1]
    # "after" as a conjunction puts its clause first; "after that" is sequential
    assert text.event_indices("the ball rolls after it falls".split()) == [1, 1, 1, 0, 0, 0]
    assert text.event_indices("falls after that rolls".split()) == [0, 1, 1, 1]
    assert max(text.event_indices(["x"] + ["then"] * 20, max_events=4)) == 3


def test_encoder_is_deterministic_temporal_and_masks_padding():
    enc = text.default_text_encoder()
    assert enc is text.default_text_encoder(), "cached"
    a, m = enc(["falls then rolls", "rolls then falls", "falls"])
    assert a.shape == (3, 3, 64) and m.tolist() == [[True] * 3, [True] * 3, [True, False, False]]
    assert (a[2, 1:] == 0).all(), "padding tokens are zero"
    assert not torch.allclose(a[0], a[1]), "word order must change the tokens"
    b, _ = text.TemporalTextEncoder(seed=0)(["falls then rolls"])
    assert torch.allclose(a[0], b[0], atol=1e-6), "same seed -> same encoder"
    bag = text.TemporalTextEncoder(seed=0, temporal=False, layers=0)
    x, _ = bag(["falls then rolls", "rolls then falls"])
    assert torch.allclose(x[0].sum(0), x[1].sum(0), atol=1e-4), "the bag-of-words baseline cannot tell"
    assert not any(p.requires_grad for p in enc.parameters()), "frozen by default"


def test_span_prior_and_alignment_loss_values():
    prior = text.span_prior_mask("a ball falls then rolls", [("falls", 0, 1), ("rolls", 2, 3)], 4)
    assert prior[:, 2].tolist() == [True, True, False, False]
    assert prior[:, 4].tolist() == [False, False, True, True] and prior[:, 0].all()
    loss = text.alignment_loss(torch.zeros(1, 4, 5), prior)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-5)
    mass = text.in_span_mass(torch.zeros(1, 4, 5), prior[None])
    assert torch.isnan(mass[0, 0]) and mass[0, 2] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="jumps"):
        text.span_prior_mask("a ball falls", [("jumps", 0, 1)], 4)
    with pytest.raises(ValueError, match="outside"):
        text.span_prior_mask("a ball falls", [("falls", 2, 9)], 4)
    with pytest.raises(ValueError, match="non-negative"):
        text.in_span_mass(-torch.ones(1, 4, 5), prior[None], logits=False)


def test_truth_prior_matches_the_batch(truth):
    prior = text.truth_prior(truth)
    assert prior.shape[:2] == (len(truth["caption"]), 8) and prior.dtype == torch.bool
    # every action word whose span is shorter than the clip is an action column
    n_action = int((prior.any(1) & ~prior.all(1)).sum())
    n_short = sum(1 for spans in truth["action_spans"] for _, a, b in spans if b - a + 1 < 8)
    assert n_action == n_short


def test_clip_trains_and_alignment_helps(truth):
    """A few steps on CPU: the contrastive loss falls and the alignment loss raises the
    in-span attention mass above a model trained without it (the 11.3.1b comparison)."""
    torch.manual_seed(0)
    base, hist = text.train_clip(steps=12, batch=12, frames=8, size=32, seed=0)
    aligned, hist_a = text.train_clip(steps=12, batch=12, frames=8, size=32, seed=0,
                                      align_weight=2.0)
    assert hist[-1]["contrastive"] < hist[0]["contrastive"] + 0.1
    assert hist_a[-1]["align"] < hist_a[0]["align"]
    assert text.span_alignment(aligned, truth) > text.span_alignment(base, truth)
    sim = text.clipsim(truth["video"][:4], truth["caption"][:4], aligned)
    assert sim.shape == (4,) and ((sim >= -1) & (sim <= 1)).all()
    with pytest.raises(ValueError, match="captions"):
        text.clipsim(truth["video"][:4], truth["caption"][:3], aligned)
    with pytest.raises(ValueError):
        text.train_clip(steps=0)


def test_nearest_color_ignores_brightness():
    red = torch.tensor(text.COLORS["red"])
    dim = (red + 1) / 2 * 0.5 * 2 - 1                   # half as bright, in [-1, 1]
    assert text.nearest_color(red) == "red" and text.nearest_color(dim) == "red"
    assert text.nearest_color(torch.tensor([0.2, 0.2, 0.2])) == "white", "gray reads as white"
    assert text.nearest_color(torch.tensor([0.2, 0.2, 0.2]), names=["gray", "red"]) == "gray"
    with pytest.raises(ValueError):
        text.nearest_color(red, names=["mauve"])


def test_caption_check_on_ground_truth(truth):
    for i in range(len(truth["caption"])):
        r = text.caption_check(truth["video"][i], truth["caption"][i], truth["masks"][i])
        assert r["color_ok"] in (True, None), (truth["caption"][i], r)
        assert r["objects_ok"] in (True, None), (truth["caption"][i], r)
        assert r["order_ok"] in (True, None), (truth["caption"][i], r)


def test_caption_check_order_on_bounce_and_throw():
    table = clip_index_table()
    idx = [i for i in split_indices("test") if CLASS_NAMES[table[i][0]].startswith("Throw")][:3]
    b = render_batch(idx, frames=16, size=32, truth=True)
    for i in range(len(idx)):
        cap = b["caption"][i]                            # "... thrown right, rises, then falls"
        ok = text.caption_check(b["video"][i], cap, b["masks"][i])
        assert ok["order_ok"] is True, (cap, ok)
        bad = text.caption_check(b["video"][i], text.reverse_events(cap), b["masks"][i])
        assert bad["order_ok"] is False, (text.reverse_events(cap), bad)
    wrong = text.caption_check(b["video"][0], "a " + ("blue" if "blue" not in b["caption"][0]
                                                      else "red") + " ball falls", b["masks"][0])
    assert wrong["color_ok"] is False and wrong["objects_ok"] is False
    two = text.caption_check(b["video"][0], "a red ball and a blue ball", b["masks"][0])
    assert two["objects_ok"] is False, "two objects named, one shown"
    with pytest.raises(ValueError, match="mask"):
        text.caption_check(b["video"][0], b["caption"][0], b["masks"][0, :, :3])
    with pytest.raises(ValueError, match="video"):
        text.caption_check(b["video"][:1], b["caption"][0])


def test_reverse_events():
    assert text.reverse_events("a ball falls, then rolls left") == "rolls left then a ball falls"
    assert text.reverse_events("a ball spins") == "a ball spins"
