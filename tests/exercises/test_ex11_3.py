"""Graded tests for lesson 11.3 (exercises in ``lessons/exercises/ex11_3.py``).

Conventions (see viddiff_mini/grading/plugin.py):
* every test takes the ``answers`` fixture and loads the module with ``answers("ex11_3")``:
  the answer runs in its own process; a function of the test passed to the answer (a
  text encoder, a counting model) is called back here; a function the answer returns (a
  sampling hook) stays there and is called through a proxy; autograd through the answer
  goes through ``answers.remote(value_and_grad, ...)`` (``viddiff_mini.grading.drivers``);
* every test carries ``@pytest.mark.points(n)`` and ``@pytest.mark.exercise("11.3.<k><letter>")``;
* tests check properties and hand-worked values with seeded inputs and tolerances, never
  "equals the reference solution"; failure messages say what was expected.

One section per exercise, in book order.
"""

import math

import pytest
import torch

from viddiff_mini.grading.drivers import value_and_grad  # runs in the answer's process

# palette colours in [-1, 1] (MovingShapes-101's red, green, blue)
RED = (0.84, -0.68, -0.68)
GREEN = (-0.6, 0.6, -0.5)
BLUE = (-0.5, -0.1, 0.96)
PALETTE = {"red": RED, "green": GREEN, "blue": BLUE}


def _discs(trajs, size, colors, radius=3.0, background=-1.0):
    """Flat-coloured discs along ``trajs (k, t, 2)``: video (3, t, h, w) and masks (k, t, h, w)."""
    trajs = torch.as_tensor(trajs, dtype=torch.float32)
    k, t, _ = trajs.shape
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    video = torch.full((3, t, size, size), background)
    masks = torch.zeros(k, t, size, size, dtype=torch.bool)
    for i in range(k):
        d = (xs - trajs[i, :, 0, None, None]) ** 2 + (ys - trajs[i, :, 1, None, None]) ** 2
        masks[i] = d <= radius**2
        for c in range(3):
            video[c][masks[i]] = colors[i][c]
    return video, masks


# =========================================================================== Exercise 11.3.1a
# temporal_text_encoding(caption, vocab, word_emb, event_emb) -> {tokens, ids, events}

VOCAB = {"<pad>": 0, "<unk>": 1, "a": 2, "ball": 3, "falls": 4, "then": 5, "rolls": 6,
         "finally": 7, "stops": 8}


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.1a")
def test_text_ids_unknown_and_events(answers):
    ex = answers("ex11_3")
    d = 8
    out = ex.temporal_text_encoding("A ball falls, then ROLLS zzz; finally stops!", VOCAB,
                                    torch.zeros(len(VOCAB), d), torch.zeros(4, d))
    assert out["ids"].tolist() == [2, 3, 4, 5, 6, 1, 7, 8], (
        "ids: lower-case words, unknown 'zzz' -> '<unk>' (1); expected [2, 3, 4, 5, 6, 1, 7, 8], "
        f"got {out['ids'].tolist()}")
    assert out["events"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2], (
        "events: 0 until 'then', 1 from 'then', 2 from 'finally'; got "
        f"{out['events'].tolist()}")
    assert tuple(out["tokens"].shape) == (8, d)
    clamped = ex.temporal_text_encoding("a then a then a then a", VOCAB, torch.zeros(9, d),
                                        torch.zeros(2, d))["events"]
    assert clamped.max() == 1, "event indices above E - 1 must be clamped to E - 1"


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.1a")
def test_text_position_table_hand_worked(answers):
    ex = answers("ex11_3")
    d = 6
    tok = ex.temporal_text_encoding("a ball falls", VOCAB, torch.zeros(len(VOCAB), d),
                                    torch.zeros(3, d))["tokens"]
    # with zero word and event embeddings the tokens are the sin-cos position table
    assert torch.allclose(tok[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]), atol=1e-6), (
        f"position 0 should be [sin 0, cos 0, ...] = [0, 1, 0, 1, 0, 1], got {tok[0].tolist()}")
    f1 = 10000 ** (-2 / 6)
    want = torch.tensor([math.sin(2), math.cos(2), math.sin(2 * f1), math.cos(2 * f1)])
    assert torch.allclose(tok[2, :4], want, atol=1e-5), (
        f"position 2: pe[2, 2i] = sin(2 / 10000^(2i/d)), pe[2, 2i+1] = cos(...); expected "
        f"{want.tolist()}, got {tok[2, :4].tolist()}")
    g = torch.Generator().manual_seed(0)
    W, E = torch.randn(len(VOCAB), d, generator=g), torch.randn(3, d, generator=g)
    tok2 = ex.temporal_text_encoding("a ball falls", VOCAB, W, E)["tokens"]
    assert torch.allclose(tok2 - tok, W[[2, 3, 4]] + E[0], atol=1e-5), (
        "tokens must be word_emb[id] + position + event_emb[event]")


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.1a")
def test_text_order_matters_and_errors(answers):
    ex = answers("ex11_3")
    g = torch.Generator().manual_seed(1)
    W, E = torch.randn(len(VOCAB), 8, generator=g), torch.randn(3, 8, generator=g)
    a = ex.temporal_text_encoding("falls then rolls", VOCAB, W, E)["tokens"]
    b = ex.temporal_text_encoding("rolls then falls", VOCAB, W, E)["tokens"]
    assert (a[0] - b[2]).abs().max() > 1e-3 and (a[2] - b[0]).abs().max() > 1e-3, (
        "'falls then rolls' and 'rolls then falls' have the same bag of words; in a temporal "
        "encoding the token of 'falls' must depend on where and in which event it is")
    same = ex.temporal_text_encoding("a ball falls", VOCAB, W, E)["tokens"]
    assert torch.allclose(same[2], ex.temporal_text_encoding("a ball falls then rolls", VOCAB,
                                                             W, E)["tokens"][2]), (
        "the same word at the same position in the same event gives the same token")
    for bad in ("", "  ...  ", "123"):
        with pytest.raises(ValueError):
            ex.temporal_text_encoding(bad, VOCAB, W, E)


# =========================================================================== Exercise 11.3.1b
# span_prior(words, spans, frames) -> (t, n) bool; alignment_loss(scores, prior) -> scalar

WORDS = ["ball", "falls", "then", "rolls"]
SPANS = [("falls", 0, 1), ("rolls", 2, 3)]


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.1b")
def test_span_prior_hand_worked(answers):
    ex = answers("ex11_3")
    p = ex.span_prior(WORDS, SPANS, 4)
    want = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 0, 1, 1], [1, 0, 1, 1]], dtype=torch.bool)
    assert p.dtype == torch.bool and tuple(p.shape) == (4, 4), (
        f"expected a (t, n) = (4, 4) bool mask, got {p.dtype} {tuple(p.shape)}")
    assert torch.equal(p, want), f"expected\n{want.int()}\ngot\n{p.int()}"
    # the second 'falls' gets the second span
    p2 = ex.span_prior(["falls", "then", "falls"], [("falls", 0, 0), ("falls", 3, 3)], 4)
    assert p2[:, 0].tolist() == [True, False, False, False]
    assert p2[:, 2].tolist() == [False, False, False, True], (
        "the k-th span belongs to the k-th occurrence of its word")
    with pytest.raises(ValueError):
        ex.span_prior(WORDS, [("jumps", 0, 1)], 4)
    with pytest.raises(ValueError):
        ex.span_prior(WORDS, [("falls", 2, 5)], 4)


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.1b")
def test_alignment_loss_hand_worked(answers):
    ex = answers("ex11_3")
    prior = ex.span_prior(WORDS, SPANS, 4)[None]                    # (1, 4, 4)
    uniform = ex.alignment_loss(torch.zeros(1, 4, 4), prior)
    assert abs(float(uniform) - math.log(2)) < 1e-5, (
        f"uniform attention over 4 frames puts 1/2 of each 2-frame span's mass inside: "
        f"loss = -log(1/2) = {math.log(2):.4f}, got {float(uniform):.4f}")
    good = torch.full((1, 4, 4), -20.0)
    good[prior] = 20.0
    assert float(ex.alignment_loss(good, prior)) < 1e-6, "all mass in the spans -> loss ~ 0"
    # only the action words count: scores of 'ball' and 'then' do not change the loss
    other = torch.zeros(1, 4, 4)
    other[0, :, 0] = torch.tensor([5.0, -3.0, 2.0, 0.0])
    assert abs(float(ex.alignment_loss(other, prior)) - math.log(2)) < 1e-5
    no_action = torch.ones(1, 4, 2, dtype=torch.bool)
    scores = torch.randn(1, 4, 2, generator=torch.Generator().manual_seed(12))
    assert float(ex.alignment_loss(scores, no_action)) == 0.0


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.1b")
def test_alignment_loss_gradient_moves_attention_into_spans(answers):
    ex = answers("ex11_3")
    prior = ex.span_prior(WORDS, SPANS, 4)[None]
    scores = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(2))
    # loss0 = alignment_loss(scores, prior); loss0.backward(), next to the answer
    loss0, grad = answers.remote(value_and_grad, ex.alignment_loss, scores, prior)
    assert grad is not None and torch.isfinite(grad).all(), (
        "the loss must be a 0-dim tensor with a graph back to the scores")
    # descent raises in-span logits and lowers the others
    assert (grad[prior & ~prior.all(1, keepdim=True)] <= 1e-7).all()
    with torch.no_grad():
        loss1 = ex.alignment_loss(scores - 1.0 * grad, prior)
    assert float(loss1) < float(loss0), "a gradient step must lower the alignment loss"


# =========================================================================== Exercise 11.3.1c
# text_video_consistency(video (3, t, h, w), masks (k, t, h, w), caption, palette) -> dict

def _right_then_down(t=12, size=24):
    """Moves right for the first half, then down."""
    half = t // 2
    xs = torch.cat([torch.linspace(4, 16, half), torch.full((t - half,), 16.0)])
    ys = torch.cat([torch.full((half,), 6.0), torch.linspace(6, 18, t - half + 1)[1:]])
    return torch.stack([xs, ys], -1)[None]


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.1c")
def test_consistency_colour(answers):
    ex = answers("ex11_3")
    video, masks = _discs(_right_then_down(), 24, [RED])
    ok = ex.text_video_consistency(video, masks, "a red ball moves right then falls", PALETTE)
    assert ok["colors"] == ["red"] and ok["color_ok"] is True, ok
    bad = ex.text_video_consistency(video, masks, "a blue ball moves right then falls", PALETTE)
    assert bad["color_ok"] is False, "caption says blue, the object is red"
    none = ex.text_video_consistency(video, masks, "a ball moves right then falls", PALETTE)
    assert none["color_ok"] is None, "no colour word -> color_ok None"


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.1c")
def test_consistency_event_order(answers):
    ex = answers("ex11_3")
    video, masks = _discs(_right_then_down(), 24, [RED])
    ok = ex.text_video_consistency(video, masks, "a red ball moves right, then falls", PALETTE)
    assert ok["order_ok"] is True, f"right happens before falling: {ok}"
    assert len(ok["times"]) == 2 and ok["times"][0] < ok["times"][1]
    assert ok["times"][0] == pytest.approx(2.0, abs=0.3), (
        f"the 5 rightward steps are steps 0..4 with equal weight: time 2, got {ok['times'][0]}")
    rev = ex.text_video_consistency(video, masks, "a red ball falls then moves right", PALETTE)
    assert rev["order_ok"] is False, "the reversed caption must fail the order check"
    one = ex.text_video_consistency(video, masks, "a red ball moves right", PALETTE)
    assert one["order_ok"] is None, "one directional event: no order to check"
    never = ex.text_video_consistency(video, masks, "a red ball moves left then falls", PALETTE)
    assert never["order_ok"] is False, "it never moves left: NaN time -> order not ok"


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.1c")
def test_consistency_subject_is_the_moving_object(answers):
    ex = answers("ex11_3")
    still = torch.full((1, 12, 2), 20.0)
    video, masks = _discs(torch.cat([still, _right_then_down()]), 24, [GREEN, BLUE])
    out = ex.text_video_consistency(video, masks, "a blue ball moves right then falls", PALETTE)
    assert sorted(out["colors"]) == ["blue", "green"] and out["color_ok"] is True, out
    assert out["order_ok"] is True, "the order is read from the object that moves"


# =========================================================================== Exercise 11.3.2a
# bezier(points, frames, order=None) -> (frames, 2)

@pytest.mark.points(1)
@pytest.mark.exercise("11.3.2a")
def test_bezier_hand_worked(answers):
    ex = answers("ex11_3")
    q = ex.bezier([[0, 0], [1, 2], [2, 0]], 3)
    assert torch.allclose(q, torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]), atol=1e-6), (
        f"quadratic (0,0),(1,2),(2,0) at s = 0, 1/2, 1 is (0,0),(1,1),(2,0); got {q.tolist()}")
    c = ex.bezier([[0, 0], [0, 4], [4, 4], [4, 0]], 5)
    # s = 1/2: (p0 + 3 p1 + 3 p2 + p3) / 8 = (2, 3); s = 1/4: (27 p0 + 27 p1 + 9 p2 + p3) / 64
    assert torch.allclose(c[2], torch.tensor([2.0, 3.0]), atol=1e-5), c[2]
    assert torch.allclose(c[1], torch.tensor([40 / 64, 144 / 64]), atol=1e-5), c[1]
    line = ex.bezier([[0, 0], [10, 0]], 6)
    assert torch.allclose(line[:, 0], torch.arange(6.0) * 2) and (line[:, 1] == 0).all()


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.2a")
def test_bezier_any_order_properties(answers):
    ex = answers("ex11_3")
    g = torch.Generator().manual_seed(3)
    pts = torch.rand(8, 2, generator=g) * 30                      # order 7
    curve = ex.bezier(pts, 11)
    assert tuple(curve.shape) == (11, 2)
    assert torch.allclose(curve[0], pts[0], atol=1e-4) and torch.allclose(curve[-1], pts[-1], atol=1e-4)
    assert (curve >= pts.min(0).values - 1e-4).all() and (curve <= pts.max(0).values + 1e-4).all(), (
        "a Bezier curve stays inside the bounding box of its control points")
    # degree elevation: the quadratic p0, p1, p2 equals the cubic p0, (p0+2p1)/3, (2p1+p2)/3, p2
    p0, p1, p2 = torch.tensor([1.0, 5.0]), torch.tensor([7.0, -2.0]), torch.tensor([3.0, 9.0])
    a = ex.bezier(torch.stack([p0, p1, p2]), 9)
    b = ex.bezier(torch.stack([p0, (p0 + 2 * p1) / 3, (2 * p1 + p2) / 3, p2]), 9)
    assert torch.allclose(a, b, atol=1e-4), "degree elevation must not change the curve"


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.2a")
def test_bezier_bad_input(answers):
    ex = answers("ex11_3")
    with pytest.raises(ValueError):
        ex.bezier([[1.0, 2.0]], 5)                                  # one point is no curve
    with pytest.raises(ValueError):
        ex.bezier([[0, 0], [1, 1], [2, 0]], 5, order=3)             # a cubic needs 4 points
    with pytest.raises(ValueError):
        ex.bezier(torch.zeros(4, 3), 5)
    assert tuple(ex.bezier([[0, 0], [1, 1], [2, 0], [3, 3]], 4, order=3).shape) == (4, 2)


# =========================================================================== Exercise 11.3.2b
# trajectory_heatmaps(trajs (k, t, 2), size, sigma) -> (k, t, h, w)

@pytest.mark.points(2)
@pytest.mark.exercise("11.3.2b")
def test_heatmaps_hand_worked(answers):
    ex = answers("ex11_3")
    trajs = torch.tensor([[[5.0, 7.0], [10.0, 3.0]], [[2.0, 2.0], [float("nan"), float("nan")]]])
    m = ex.trajectory_heatmaps(trajs, (12, 16), sigma=2.0)
    assert tuple(m.shape) == (2, 2, 12, 16), f"expected (k, t, h, w) = (2, 2, 12, 16), got {tuple(m.shape)}"
    assert m[0, 0, 7, 5] == pytest.approx(1.0) and m[0, 1, 3, 10] == pytest.approx(1.0), (
        "peak 1 at the centre; pixel (x, y) is m[..., y, x]")
    assert m[0, 0, 7, 7] == pytest.approx(math.exp(-0.5), abs=1e-5), (
        "one sigma (2 px) to the right: exp(-1/2)")
    assert m[0, 0, 9, 7] == pytest.approx(math.exp(-1.0), abs=1e-5)
    assert (m[1, 1] == 0).all(), "an absent object (NaN) gives an all-zero map"
    assert torch.isfinite(m).all()


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.2b")
def test_heatmaps_objects_are_independent(answers):
    ex = answers("ex11_3")
    a = torch.stack([torch.linspace(2, 14, 6), torch.full((6,), 8.0)], -1)
    b = torch.stack([torch.full((6,), 8.0), torch.linspace(14, 2, 6)], -1)
    m1 = ex.trajectory_heatmaps([a, b], 16, sigma=1.5)
    m2 = ex.trajectory_heatmaps([a, b.flip(0)], 16, sigma=1.5)
    assert torch.equal(m1[0], m2[0]), "changing object 1's path must not change object 0's maps"
    assert not torch.equal(m1[1], m2[1])
    with pytest.raises(ValueError):
        ex.trajectory_heatmaps([a, b[:4]], 16)                     # different frame counts


# =========================================================================== Exercise 11.3.2c
# trajectory_conflicts(trajs, size, z=None, radius=4.0, max_speed=None) -> dict

def _crossing():
    x0 = torch.linspace(4, 28, 7)
    y = torch.full((7,), 16.0)
    return torch.stack([torch.stack([x0, y], -1), torch.stack([x0.flip(0), y], -1)])


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.2c")
def test_conflicts_crossing_depth_order(answers):
    ex = answers("ex11_3")
    out = ex.trajectory_conflicts(_crossing(), 32, z=[0, 1], radius=3.0)
    # centres 24, 16, 8, 0, 8, 16, 24 px apart: they overlap (< 6 px) only at frame 3
    assert out["crossings"] == [(0, 1, 3, 1)], (
        f"one crossing at frame 3 with object 1 (larger z) in front; got {out['crossings']}")
    assert out["occluded"].tolist() == [[False] * 3 + [True] + [False] * 3, [False] * 7]
    assert out["feasible"] is True and out["issues"] == []
    swapped = ex.trajectory_conflicts(_crossing(), 32, z=[5, 1], radius=3.0)
    assert swapped["crossings"] == [(0, 1, 3, 0)] and swapped["occluded"][1, 3]
    wide = ex.trajectory_conflicts(_crossing(), 32, radius=4.5)     # < 9 px: frames 2, 3, 4
    assert [c[2] for c in wide["crossings"]] == [2, 3, 4]


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.2c")
def test_conflicts_speed_limit_and_frame(answers):
    ex = answers("ex11_3")
    out = ex.trajectory_conflicts(_crossing(), 32, max_speed=3.0)   # 4 px/frame
    assert out["feasible"] is False and len(out["issues"]) == 2, out["issues"]
    assert "object 0" in out["issues"][0] and "object 1" in out["issues"][1]
    assert ex.trajectory_conflicts(_crossing(), 32, max_speed=4.5)["feasible"] is True
    far = _crossing()
    far[1, 5, 0] = 40.0
    with pytest.raises(ValueError, match=r"object 1.*frame 5|frame 5.*object 1"):
        ex.trajectory_conflicts(far, 32)


# =========================================================================== Exercise 11.3.3a
# drag_warp(video (b, 3, t, h, w), start, target, radius) -> (b, 3, t, h, w)

def _static_disc(size=24, t=5, at=(6.0, 12.0)):
    video, _ = _discs(torch.tensor([at]).expand(t, 2)[None], size, [RED], radius=2.0,
                      background=0.0)
    return video[None]


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.3a")
def test_drag_warp_moves_the_content(answers):
    ex = answers("ex11_3")
    src = _static_disc()
    out = ex.drag_warp(src, (6.0, 12.0), (18.0, 12.0), radius=4.0)
    assert out.shape == src.shape
    assert torch.allclose(out[:, :, 0], src[:, :, 0], atol=1e-5), (
        "frame 0 is the source (the drag starts there)")
    last = out[0, :, -1]
    assert torch.allclose(last[:, 12, 18], torch.tensor(RED), atol=1e-4), (
        "at the last frame the disc's content is at the target (18, 12)")
    # at frame 2 (half-way) the dragged point is at (12, 12)
    assert torch.allclose(out[0, :, 2, 12, 12], torch.tensor(RED), atol=1e-4)


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.3a")
def test_drag_warp_leaves_the_rest_and_checks_bounds(answers):
    ex = answers("ex11_3")
    src = _static_disc() + 0.01 * torch.randn(1, 3, 5, 24, 24, generator=torch.Generator().manual_seed(0))
    out = ex.drag_warp(src, (6.0, 12.0), (18.0, 12.0), radius=4.0)
    ys, xs = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    far = ((ys - 12).abs() > 4.5) | (xs > 22.5)                     # beyond every disc
    assert torch.equal(out[..., far], src[..., far]), "pixels outside the dragged discs keep the source exactly"
    with pytest.raises(ValueError):
        ex.drag_warp(src, (6.0, 12.0), (30.0, 12.0), radius=4.0)


# =========================================================================== Exercise 11.3.3b
# local_motion_mask(paths, size, radius, per_frame=False)

@pytest.mark.points(2)
@pytest.mark.exercise("11.3.3b")
def test_local_mask_hand_worked(answers):
    ex = answers("ex11_3")
    still = torch.tensor([[5.0, 5.0]] * 3)
    m = ex.local_motion_mask(still, 12, radius=2.0)
    assert m.dtype == torch.bool and tuple(m.shape) == (12, 12)
    assert int(m.sum()) == 13, f"a disc of radius 2 covers 13 pixels, got {int(m.sum())}"
    path = torch.tensor([[[5.0, 5.0], [10.0, 5.0]]])               # (m=1, t=2, 2)
    assert int(ex.local_motion_mask(path, 16, 2.0).sum()) == 26, "union of two disjoint discs"
    pf = ex.local_motion_mask(path, 16, 2.0, per_frame=True)
    assert tuple(pf.shape) == (2, 16, 16)
    assert int(pf[0].sum()) == 13 and int(pf[1].sum()) == 26, (
        "per frame: the current disc plus the frame-0 disc (the vacated area may change)")
    assert pf[1, 5, 10] and pf[1, 5, 5] and not pf[0, 5, 10]


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.3b")
def test_local_mask_several_points_and_errors(answers):
    ex = answers("ex11_3")
    two = torch.tensor([[[2.0, 2.0]] * 2, [[12.0, 12.0]] * 2])
    m = ex.local_motion_mask(two, 16, 1.0)
    assert int(m.sum()) == 10 and m[2, 2] and m[12, 12], "two points, two 5-pixel discs"
    with pytest.raises(ValueError):
        ex.local_motion_mask(torch.zeros(2, 3, 3), 16, 1.0)


def _drag_scene(red_at, green_at, size=16, r=2.0):
    """A red and a green disc (radius ``r``) on a dark background, positions per frame
    ``[(x, y), ...]``: (1, 3, t, size, size)."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    t = len(red_at)
    v = torch.full((1, 3, t, size, size), -0.9)
    for f in range(t):
        for (x, y), col in ((red_at[f], RED), (green_at[f], GREEN)):
            disc = (xs - x) ** 2 + (ys - y) ** 2 <= r * r
            v[0, :, f][:, disc] = torch.tensor(col)[:, None]
    return v


def _red_centroid(frame):
    """(x, y) centroid of the red pixels of a (3, h, w) frame, or None."""
    red = (frame[0] > 0.5) & (frame[1] < -0.5)
    if not red.any():
        return None
    ys, xs = red.nonzero(as_tuple=True)
    return float(xs.float().mean()), float(ys.float().mean())


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.3b")
def test_local_mask_controls_motion_inside_sampling(answers):
    from viddiff_mini.control.drag import blend_hook
    from viddiff_mini.diffusion.core import Diffusion

    ex = answers("ex11_3")
    t = 4
    # drag the red disc from (4, 10) to (11, 10); the green one at (12, 3) must stay put
    path = torch.stack([torch.linspace(4, 11, t), torch.full((t,), 10.0)], -1)
    source = _drag_scene([(4.0, 10.0)] * t, [(12.0, 3.0)] * t)
    # the "model" proposes the drag but also (wrongly) moves the green disc: only the
    # mask keeps the edit local
    proposal = _drag_scene(path.tolist(), [(12.0 - f, 3.0) for f in range(t)])

    class Zero(torch.nn.Module):
        def forward(self, x, t, cond=None):
            return torch.zeros_like(x)

    for per_frame in (True, False):
        mask = ex.local_motion_mask(path[None], 16, 3.0, per_frame=per_frame)
        hook = blend_hook(source, mask, inner=lambda x0, tt, x_t: proposal)
        out = Diffusion().sample(Zero(), tuple(source.shape), steps=3, x0_hook=hook,
                                 generator=torch.Generator().manual_seed(0))[0]
        for f in range(t):
            c = _red_centroid(out[:, f])
            want = tuple(path[f].tolist())
            assert c is not None and abs(c[0] - want[0]) < 0.3 and abs(c[1] - want[1]) < 0.3, (
                f"per_frame={per_frame}, frame {f}: sampling with the mask as the editable "
                f"region should show the red disc dragged to {want} (discs of radius 3 around "
                f"the path, x = column, y = row), its red pixels are centred at {c}")
        assert torch.equal(out[:, :, :8, 8:], source[0, :, :, :8, 8:]), (
            f"per_frame={per_frame}: the green disc at (12, 3) is far from the drag path; "
            f"the mask must keep it (and the whole top-right corner) exactly as in the source")
        left = out[:, t - 1, 8:13, 1:8]          # around the start (4, 10) on the last frame
        assert (left[0] < 0).all(), (
            f"per_frame={per_frame}: on the last frame the area the red disc left must be "
            f"refilled (the frame-0 disc is editable on every frame), red is still there")


# =========================================================================== Exercise 11.3.3c
# masked_blend_hook(source, mask) -> hook(x0, t); masked_psnr(video, source, edit_mask)

class _TinyNet(torch.nn.Module):
    """A fixed random conv 'denoiser': output depends on every input pixel nearby."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 3, 3, padding=1)

    def forward(self, x, t, cond=None):
        return self.conv(x) * 0.5


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.3c")
def test_blend_hook_copies_the_source(answers):
    ex = answers("ex11_3")
    g = torch.Generator().manual_seed(4)
    src = torch.rand(2, 3, 4, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:7] = True
    hook = ex.masked_blend_hook(src, mask)
    x0 = torch.rand(2, 3, 4, 8, 8, generator=g) * 2 - 1
    y = hook(x0, 0.5)
    assert torch.equal(y[..., ~mask], src[..., ~mask]), "outside the mask: the source, exactly"
    assert torch.equal(y[..., mask], x0[..., mask]), "inside the mask: the prediction"
    tmask = torch.zeros(4, 8, 8, dtype=torch.bool)
    tmask[1:] = mask
    y2 = ex.masked_blend_hook(src, tmask)(x0, 0.5)
    assert torch.equal(y2[:, :, 0], src[:, :, 0]), "a (t, h, w) mask works per frame"
    with pytest.raises(ValueError):
        ex.masked_blend_hook(src, torch.zeros(7, 8, dtype=torch.bool))


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.3c")
def test_blend_hook_keeps_unedited_region_in_sampling(answers):
    from viddiff_mini.diffusion import Diffusion

    ex = answers("ex11_3")
    src = torch.rand(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:, :4] = True
    out = Diffusion().sample(_TinyNet(), tuple(src.shape), steps=4,
                             generator=torch.Generator().manual_seed(0),
                             x0_hook=ex.masked_blend_hook(src, mask))
    assert torch.equal(out[..., ~mask], src[..., ~mask]), (
        "the unedited region of the sample must equal the source bit for bit")
    assert not torch.equal(out[..., mask], src[..., mask])
    assert ex.masked_psnr(out, src, mask) == math.inf


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.3c")
def test_masked_psnr_hand_worked(answers):
    ex = answers("ex11_3")
    src = torch.zeros(1, 3, 2, 4, 4)
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0] = True
    video = src + 0.1
    video[..., mask] = 0.9                                         # edits do not count
    want = 10 * math.log10(4 / 0.01)
    assert ex.masked_psnr(video, src, mask) == pytest.approx(want, abs=1e-3), (
        f"error 0.1 on every unedited pixel: 10 log10(2^2 / 0.01) = {want:.3f} dB")
    with pytest.raises(ValueError):
        ex.masked_psnr(video, src, torch.ones(4, 4, dtype=torch.bool))


# =========================================================================== Exercise 11.3.4a
# multimodal_cond(caption, trajectory, reference, frames, size, encoder, text_dim=64, sigma=1.5)

def _encoder(caption):
    n = len(caption.split())
    return torch.ones(1, n, 64) * n, torch.ones(1, n, dtype=torch.bool)


def _reference(t=3, size=16):
    g = torch.Generator().manual_seed(6)
    ref = torch.rand(3, t, size, size, generator=g) * 0.4 - 0.8   # dark background
    ref[:, :, 4:8, 4:8] = torch.tensor(RED)[:, None, None, None]
    return ref


def _path(x0, x1, y, t=6):
    return torch.stack([torch.linspace(x0, x1, t), torch.full((t,), float(y))], -1)


def _changed(a, b, key):
    return not torch.equal(a[key], b[key])


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.4a")
def test_multimodal_cond_each_control_reaches_only_its_inputs(answers):
    ex = answers("ex11_3")
    traj, ref = _path(2, 12, 9)[None], _reference()
    base = ex.multimodal_cond("a red square moves right", traj, ref, 6, 16, _encoder)
    assert tuple(base["concat"].shape)[:1] == (1,) and tuple(base["concat"].shape)[2:] == (6, 16, 16)
    assert torch.equal(base["context"], _encoder("a red square moves right")[0]), (
        "the caption reaches the model as the encoder's tokens (cross-attention context)")
    other_caption = ex.multimodal_cond("a red square", traj, ref, 6, 16, _encoder)
    other_traj = ex.multimodal_cond("a red square moves right", _path(12, 2, 4)[None], ref, 6,
                                    16, _encoder)
    g = torch.Generator().manual_seed(8)
    ref2 = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1          # another look and first frame
    other_ref = ex.multimodal_cond("a red square moves right", traj, ref2, 6, 16, _encoder)
    for name, c, want in (("caption", other_caption, {"context"}),
                          ("trajectory", other_traj, {"concat"}),
                          ("reference", other_ref, {"concat", "vector"})):
        got = {k for k in ("context", "concat", "vector") if _changed(base, c, k)}
        assert got == want, (
            f"changing only the {name} should change the model input(s) {sorted(want)} "
            f"(text -> context, trajectory and first frame -> concat, style -> vector), "
            f"it changed {sorted(got)}")
        for key in ("context_keep", "concat_keep", "vector_keep"):
            assert c[key].tolist() == [True], f"every control given: {key} must be [True]"
    moved = (other_ref["concat"] - base["concat"]).abs().amax(dim=(0, 3, 4))  # (channel, frame)
    assert (moved[2:5] > 0).all() and (moved[[0, 1, 5]] == 0).all(), (
        f"the reference's first frame enters concat channels 2-4 on every frame (the "
        f"indicator, channel 5, marks frame 0 whatever the image); a different reference "
        f"changed (channel, frame) {moved.nonzero().tolist()}")
    assert torch.equal(base["concat"][0, 2:5], ref[:, 0, None].expand(-1, 6, -1, -1)), (
        "channels 2-4: the reference's frame 0 on every frame")


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.4a")
def test_multimodal_cond_trajectory_maps_follow_the_paths(answers):
    ex = answers("ex11_3")
    a, b = _path(2, 12, 9), _path(13, 3, 4)                       # two objects, (t, 2) each
    none = ex.multimodal_cond(None, None, None, 6, 16, _encoder)["concat"][0]
    for sigma in (1.5, 3.0):
        one = ex.multimodal_cond(None, a[None], None, 6, 16, _encoder, sigma=sigma)["concat"][0]
        maps = one - none                                          # (channels, t, h, w)
        for f in range(6):
            x, y = (round(v) for v in a[f].tolist())
            total = maps[:, f].sum(0)
            iy, ix = divmod(int(total.argmax()), 16)
            peak = float(maps[:, f, y, x].max())
            assert (ix, iy) == (x, y) and peak == pytest.approx(1.0, abs=1e-4), (
                f"sigma={sigma}, frame {f}: the trajectory map should peak (value 1) at the "
                f"path point (x, y) = ({x}, {y}); it peaks at ({ix}, {iy}) with {peak:.3f} there")
        f, (x, y) = 0, (2, 9)                   # frame 0 sits exactly on the pixel grid
        ch = int(maps[:, f, y, x].argmax())
        want = math.exp(-1 / (2 * sigma**2))
        assert float(maps[ch, f, y, x + 1]) == pytest.approx(want, abs=1e-3), (
            f"sigma={sigma}: a Gaussian heatmap one pixel from the point is exp(-1 / (2 sigma^2)) "
            f"= {want:.4f}, got {float(maps[ch, f, y, x + 1]):.4f}")
    two = ex.multimodal_cond(None, torch.stack([a, b]), None, 6, 16, _encoder)["concat"][0] - none
    for f in range(6):
        (xa, ya), (xb, yb) = ((round(v) for v in p[f].tolist()) for p in (a, b))
        ca, cb = int(two[:, f, ya, xa].argmax()), int(two[:, f, yb, xb].argmax())
        assert ca != cb, f"frame {f}: each object needs its own map (channel), both peak in {ca}"
        assert float(two[ca, f, yb, xb]) < 0.05 and float(two[cb, f, ya, xa]) < 0.05, (
            f"frame {f}: object 0's map must not show object 1 and vice versa")
        if f == 0:
            first = (ca, cb)
        assert (ca, cb) == first, "an object keeps its map (channel) on every frame"


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.4a")
def test_multimodal_cond_reference_image_and_style(answers):
    from viddiff_mini.control.style import STYLE_DIM, style_code

    ex = answers("ex11_3")
    ref = _reference()
    none = ex.multimodal_cond(None, None, None, 6, 16, _encoder)
    with_ref = ex.multimodal_cond(None, None, ref, 6, 16, _encoder)
    added = (with_ref["concat"] - none["concat"])[0, :, 0]          # (channels, h, w), frame 0
    found = [k for k in range(added.shape[0] - 2) if torch.allclose(added[k:k + 3], ref[:, 0])]
    assert found, "the reference's first frame (RGB, in order) must be in the concat input on frame 0"
    black = ref.clone()
    black[:, 0] = 0.0
    black_cond = ex.multimodal_cond(None, None, black, 6, 16, _encoder)
    assert not torch.equal(black_cond["concat"], none["concat"]), (
        "a reference whose first frame is all zeros must still differ from no reference "
        "(an indicator tells the model an image is given)")
    assert torch.allclose(with_ref["vector"][0, :STYLE_DIM], style_code(ref[None])[0], atol=1e-5), (
        "the vector input carries the reference's style code")
    assert (none["vector"] == 0).all() and not torch.equal(
        with_ref["vector"], ex.multimodal_cond(None, None, ref * 0.5, 6, 16, _encoder)["vector"]), (
        "no reference: a zero vector; another look gives another vector")


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.4a")
def test_multimodal_cond_subsets_and_keep_masks(answers):
    ex = answers("ex11_3")
    traj = torch.stack([torch.linspace(2, 12, 6), torch.full((6,), 9.0)], -1)[None]
    only_traj = ex.multimodal_cond(None, traj, None, 6, 16, _encoder)
    assert only_traj["context_keep"].tolist() == [False] and not only_traj["context_mask"].any()
    assert only_traj["concat_keep"].tolist() == [True], "trajectory alone keeps the shared concat input"
    assert (only_traj["concat"][0, 2:] == 0).all(), "no reference: first-frame channels are zeros"
    assert only_traj["vector_keep"].tolist() == [False] and (only_traj["vector"] == 0).all()
    only_ref = ex.multimodal_cond(None, None, _reference(), 6, 16, _encoder)
    assert only_ref["concat_keep"].tolist() == [True] and (only_ref["concat"][0, :2] == 0).all()
    nothing = ex.multimodal_cond(None, None, None, 6, 16, _encoder)
    assert nothing["concat_keep"].tolist() == [False], "keep = OR of the controls sharing the input"
    with pytest.raises(ValueError):
        ex.multimodal_cond(None, torch.zeros(3, 6, 2), None, 6, 16, _encoder)   # 3 objects


# =========================================================================== Exercise 11.3.4b
# fused_guidance(model, x_t, t, conds, null_cond, weights)

class _CountingModel:
    def __init__(self):
        self.calls = 0

    def __call__(self, x, t, cond):
        self.calls += 1
        return x + cond["bias"]


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.4b")
def test_fused_guidance_hand_worked(answers):
    ex = answers("ex11_3")
    x = torch.zeros(2, 3, 2, 4, 4)
    t = torch.full((2,), 0.5)
    conds = {"text": {"bias": 1.0}, "trajectory": {"bias": 2.0}, "style": {"bias": -4.0}}
    model = _CountingModel()
    out = ex.fused_guidance(model, x, t, conds, {"bias": 0.0}, {"text": 2.0, "trajectory": 0.5})
    assert torch.allclose(out, torch.full_like(x, 3.0)), (
        "f(null) + 2 (f(text) - f(null)) + 0.5 (f(traj) - f(null)) = 0 + 2 + 1 = 3")
    assert model.calls == 3, f"null + one call per weighted control = 3 calls, got {model.calls}"
    model = _CountingModel()
    out = ex.fused_guidance(model, x + 1, t, conds, {"bias": 0.5},
                            {"text": 0.0, "style": 1.0})
    assert torch.allclose(out, torch.full_like(x, -3.0)) and model.calls == 2, (
        "weight 1 on one control = its plain conditional prediction; weight 0 costs no call")


class _ScaleModel:
    """f(x, t, cond) = cond["scale"] * x + t (per sample): predictions that depend on the input."""

    def __call__(self, x, t, cond):
        return cond["scale"] * x + t.view(-1, 1, 1, 1, 1)


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.4b")
def test_fused_guidance_only_weighted_controls_count(answers):
    ex = answers("ex11_3")
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 2, 4, 4, generator=g)
    t = torch.tensor([0.25, 0.75])
    conds = {"text": {"scale": 2.0}, "trajectory": {"scale": -1.0}, "style": {"scale": 5.0}}
    out = ex.fused_guidance(_ScaleModel(), x, t, conds, {"scale": 1.0}, {"text": 1.5, "trajectory": 2.0})
    # f(null) = x + t; terms 1.5 (2x - x) + 2 (-x - x) = 1.5 x - 4 x; "style" has no weight
    want = x * (1 + 1.5 - 4.0) + t.view(-1, 1, 1, 1, 1)
    assert torch.allclose(out, want, atol=1e-5), (
        "f(null) + 1.5 (f(text) - f(null)) + 2 (f(traj) - f(null)) = -1.5 x + t per sample; "
        "a control without a weight (style) adds nothing")
    only_null = ex.fused_guidance(_ScaleModel(), x, t, conds, {"scale": 1.0}, {})
    assert torch.allclose(only_null, x + t.view(-1, 1, 1, 1, 1), atol=1e-6), "no weights: f(null)"
    with pytest.raises(ValueError):
        ex.fused_guidance(_CountingModel(), torch.zeros(1, 3, 1, 2, 2), torch.zeros(1),
                          {"text": {"bias": 1.0}}, {"bias": 0.0}, {"trajectory": 1.0})


# =========================================================================== Exercise 11.3.4c
# resolve_direction_conflict(caption, trajectory, weights, policy, down_weight, tol)

RIGHTWARD = torch.stack([torch.linspace(2, 20, 8), torch.full((8,), 5.0)], -1)


@pytest.mark.points(2)
@pytest.mark.exercise("11.3.4c")
def test_conflict_detected_and_resolved(answers):
    ex = answers("ex11_3")
    w = {"text": 3.0, "trajectory": 2.0}
    new, rep = ex.resolve_direction_conflict("a red ball moves left", RIGHTWARD, w)
    assert rep["conflict"] is True and rep["caption_direction"] == "left"
    assert rep["trajectory_direction"] == "right"
    assert new == {"text": 0.0, "trajectory": 2.0}, f"priority: the trajectory wins, got {new}"
    assert w == {"text": 3.0, "trajectory": 2.0}, "the input weights must not be modified"
    new, rep = ex.resolve_direction_conflict("a red ball moves left", RIGHTWARD[None], w,
                                             policy="weights", down_weight=0.5)
    assert new == {"text": 1.5, "trajectory": 2.0} and rep["conflict"]
    with pytest.raises(ValueError, match="left"):
        ex.resolve_direction_conflict("moves left", RIGHTWARD, w, policy="error")


@pytest.mark.points(1)
@pytest.mark.exercise("11.3.4c")
def test_conflict_absent_cases(answers):
    ex = answers("ex11_3")
    w = {"text": 3.0, "trajectory": 2.0}
    for caption, traj in [("a ball moves right", RIGHTWARD),               # agree
                          ("a ball spins", RIGHTWARD),                     # no direction word
                          ("a ball moves up", RIGHTWARD[:1].expand(8, 2))]:  # no displacement
        new, rep = ex.resolve_direction_conflict(caption, traj, w, policy="error")
        assert rep["conflict"] is False and new == w, (caption, rep)
    down = torch.stack([torch.full((8,), 5.0), torch.linspace(2, 20, 8)], -1)
    _, rep = ex.resolve_direction_conflict("it goes left then down", down, w)
    assert rep["trajectory_direction"] == "down" and rep["conflict"] is False, (
        "the caption's last direction word ('down') is compared; image y grows downward")
