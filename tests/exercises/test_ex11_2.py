"""Graded tests for lesson 11.2 (exercises in ``lessons/exercises/ex11_2.py``).

Conventions (see viddiff_mini/grading/plugin.py):
* every test takes the ``answers`` fixture and loads the module with ``answers("ex11_2")``:
  the answer runs in its own process and a module it returns stays there (the test calls
  it through a proxy); a function of the test passed to the answer is called back here,
  unless the answer differentiates through it (then it is a torch module, sent over);
  what must run next to the answer (randomising its module, counting its FLOPs) goes
  through ``answers.remote(helper, ...)`` with a helper from ``viddiff_mini.grading.drivers``;
* every test carries ``@pytest.mark.points(n)`` and ``@pytest.mark.exercise("11.2.<k><letter>")``;
* tests check properties and hand-worked values with seeded inputs and tolerances, never
  "equals the reference solution"; reference numbers come from the library (parameter
  counts, FlopCounterMode) or are worked out by hand in the comments.

One section per exercise, in book order.
"""

import functools
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from viddiff_mini.grading.drivers import count_flops, randomize  # run in the answer's process

KINDS = ("full3d", "2plus1d", "pseudo3d")


def _video(b=1, c=3, t=4, h=6, w=6, seed=0):
    return torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def flop_counter():
    """FlopCounterMode, imported and warmed up once (its first use loads torch._dynamo)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False):
        nn.Conv2d(1, 1, 1)(torch.zeros(1, 1, 1, 1))
    return FlopCounterMode


# =========================================================================== Exercise 11.2.1a
# make_conv(kind, c_in, c_out, kernel=3)

@pytest.mark.points(1)
@pytest.mark.exercise("11.2.1a")
def test_make_conv_shapes(answers):
    ex = answers("ex11_2")
    x = _video(b=2, c=5, t=4, h=6, w=8)
    for kind in KINDS:
        for k in (3, 5):
            y = ex.make_conv(kind, 5, 7, kernel=k)(x)
            assert tuple(y.shape) == (2, 7, 4, 6, 8), (
                f"{kind}, kernel {k}: (2, 5, 4, 6, 8) should map to (2, 7, 4, 6, 8) "
                f"('same' padding in t, h, w), got {tuple(y.shape)}")
    with pytest.raises(ValueError):
        ex.make_conv("conv4d", 3, 3)


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.1a")
def test_make_conv_parameter_counts(answers):
    ex = answers("ex11_2")
    # c_in = 4, c_out = 6, k = 3:
    # full3d   27*4*6 + 6                                    = 654
    # 2plus1d  M = floor(27*4*6 / (9*4 + 3*6)) = 12;
    #          9*4*12 + 12 + 3*12*6 + 6                      = 666
    # pseudo3d 9*4*6 + 6 + 3*6*6 + 6                         = 336
    want = {"full3d": 654, "2plus1d": 666, "pseudo3d": 336}
    for kind, n in want.items():
        got = _n_params(ex.make_conv(kind, 4, 6))
        assert got == n, f"{kind}(4 -> 6, k=3): expected {n} parameters, got {got}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.1a")
def test_make_conv_temporal_reach(answers):
    ex = answers("ex11_2")
    x = _video(c=3, t=5, h=5, w=5, seed=1)
    y = x.clone()
    y[:, :, 0] += 1.0  # change frame 0 only
    for kind in ("full3d", "2plus1d"):
        torch.manual_seed(0)
        conv = ex.make_conv(kind, 3, 4)
        with torch.no_grad():
            d = (conv(x) - conv(y)).abs().amax(dim=(0, 1, 3, 4))
        assert d[1] > 0 and (d[2:] == 0).all(), (
            f"{kind} with kernel 3: a change in frame 0 must reach output frame 1 and no "
            f"further; per-frame change {d.tolist()}")


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.1a")
def test_pseudo3d_is_per_frame_at_init(answers):
    ex = answers("ex11_2")
    torch.manual_seed(0)
    conv = ex.make_conv("pseudo3d", 3, 4)
    x = _video(c=3, t=4, h=5, w=5, seed=2)
    with torch.no_grad():
        out = conv(x)
        for j in range(4):  # the temporal conv starts as the identity
            alone = conv(x[:, :, j:j + 1])[:, :, 0]
            assert torch.allclose(out[:, :, j], alone, atol=1e-5), (
                f"pseudo3d at initialisation: output frame {j} should equal the 2-D conv of "
                f"input frame {j} alone (temporal conv initialised to the identity)")


# =========================================================================== Exercise 11.2.1b
# conv_costs(kind, c_in, c_out, t, h, w, kernel=3, batch=1)

@pytest.mark.points(1)
@pytest.mark.exercise("11.2.1b")
def test_conv_costs_params_match_modules(answers):
    from viddiff_mini.nn.conv3d import build_conv

    ex = answers("ex11_2")
    for c_in, c_out, k in [(3, 16, 3), (16, 16, 3), (8, 32, 5)]:
        for kind in KINDS:
            want = _n_params(build_conv(kind, c_in, c_out, k))  # counted from a real module
            got = ex.conv_costs(kind, c_in, c_out, 2, 4, 4, kernel=k)["params"]
            assert got == want, f"{kind}({c_in} -> {c_out}, k={k}): params {got}, expected {want}"


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.1b")
def test_conv_costs_flops_match_flop_counter(answers, flop_counter):
    from viddiff_mini.nn.conv3d import build_conv

    ex = answers("ex11_2")
    for kind in KINDS:
        for (b, c_in, c_out, t, h, w) in [(1, 3, 8, 4, 6, 6), (2, 8, 8, 3, 5, 7)]:
            conv = build_conv(kind, c_in, c_out)
            with torch.no_grad(), flop_counter(display=False) as fc:
                conv(torch.zeros(b, c_in, t, h, w))
            want = fc.get_total_flops()
            got = ex.conv_costs(kind, c_in, c_out, t, h, w, batch=b)["flops"]
            assert got == want, (f"{kind} on ({b}, {c_in}, {t}, {h}, {w}) -> {c_out} channels: "
                                 f"FlopCounterMode counts {want} FLOPs, conv_costs says {got}")


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.1b")
def test_conv_costs_activation_bytes_hand_worked(answers):
    ex = answers("ex11_2")
    # c_in=2, c_out=3, t=h=w=2 (8 voxels), float32:
    # full3d   output 3*8                    -> 24 floats = 96 bytes
    # 2plus1d  M = floor(27*6 / (18 + 9)) = 6: 2 maps of 6*8 + output 3*8 = 120 floats = 480
    # pseudo3d 2-D map 3*8 + output 3*8      -> 48 floats = 192 bytes
    want = {"full3d": 96, "2plus1d": 480, "pseudo3d": 192}
    for kind, n in want.items():
        got = ex.conv_costs(kind, 2, 3, 2, 2, 2)["activation_bytes"]
        assert got == n, f"{kind}: activation_bytes {got}, expected {n}"
        got2 = ex.conv_costs(kind, 2, 3, 2, 2, 2, batch=3)["activation_bytes"]
        assert got2 == 3 * n, f"{kind}: activations must scale with the batch ({got2} != {3 * n})"


# =========================================================================== Exercise 11.2.1c
# compare_convs(videos, kinds, width, steps, lr, seed)

def _moving_bar(n=4, t=4, size=8):
    """A bright vertical bar moving one pixel per frame, values in [-1, 1]."""
    v = -torch.ones(n, 3, t, size, size)
    for i in range(n):
        for j in range(t):
            v[i, :, j, :, (i + j) % size] = 1.0
    return v


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.1c")
def test_compare_convs_keys_and_params(answers):
    from viddiff_mini.nn.conv3d import build_conv

    ex = answers("ex11_2")
    res = ex.compare_convs(_moving_bar(), kinds=KINDS, width=4, steps=3, seed=0)
    assert set(res) == set(KINDS), f"expected one entry per kind {KINDS}, got {list(res)}"
    for kind in KINDS:
        want = _n_params(build_conv(kind, 3, 4)) + _n_params(build_conv(kind, 4, 3))
        assert res[kind]["params"] == want, (
            f"{kind}: the network conv(3 -> 4), SiLU, conv(4 -> 3) has {want} parameters, "
            f"got {res[kind]['params']}")
        assert {"loss_start", "loss_end", "hidden_loss_end", "seconds"} <= set(res[kind])


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.1c")
def test_compare_convs_trains_and_is_deterministic(answers):
    ex = answers("ex11_2")
    videos = _moving_bar()
    a = ex.compare_convs(videos, width=4, steps=15, lr=1e-2, seed=3)
    b = ex.compare_convs(videos, width=4, steps=15, lr=1e-2, seed=3)
    for kind in KINDS:
        r = a[kind]
        assert r["loss_end"] < r["loss_start"], (
            f"{kind}: 15 Adam steps should lower the loss ({r['loss_start']:.4f} -> "
            f"{r['loss_end']:.4f})")
        assert math.isfinite(r["hidden_loss_end"]) and r["hidden_loss_end"] >= 0
        assert abs(r["loss_end"] - b[kind]["loss_end"]) < 1e-6, (
            f"{kind}: the same seed must give the same result")
        # the loss at the start is the untrained network on the masked clip: independent of
        # the number of steps
        c = ex.compare_convs(videos, kinds=(kind,), width=4, steps=1, lr=1e-2, seed=3)
        assert abs(c[kind]["loss_start"] - r["loss_start"]) < 1e-6


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.1c")
def test_compare_convs_hides_the_odd_frames(answers):
    ex = answers("ex11_2")
    # Two batches that agree on the even frames and differ on the odd ones: with the odd
    # frames zeroed the network sees the same input for both, so with lr = 0 (no update)
    # it makes the same prediction and the loss on the visible frames is the same. For
    # t = 5 (hidden frames 1 and 3) the whole-clip MSE is (2 hidden + 3 visible) / 5, so
    #     5 (loss_end_a - loss_end_b) = 2 (hidden_loss_end_a - hidden_loss_end_b).
    g = torch.Generator().manual_seed(11)
    a = torch.rand(2, 3, 5, 6, 6, generator=g) * 2 - 1
    b = a.clone()
    b[:, :, 1::2] = torch.rand(2, 3, 2, 6, 6, generator=g) * 2 - 1
    ra = ex.compare_convs(a, width=4, steps=1, lr=0.0, seed=5)
    rb = ex.compare_convs(b, width=4, steps=1, lr=0.0, seed=5)
    for kind in KINDS:
        assert abs(ra[kind]["loss_end"] - ra[kind]["loss_start"]) < 1e-6, (
            f"{kind}: with lr=0 the weights do not move: loss_end = loss_start")
        lhs = 5 * (ra[kind]["loss_end"] - rb[kind]["loss_end"])
        rhs = 2 * (ra[kind]["hidden_loss_end"] - rb[kind]["hidden_loss_end"])
        assert abs(rhs) > 1e-3 and abs(lhs - rhs) < 1e-4 * (1 + abs(rhs)), (
            f"{kind}: clips that differ only on the odd frames must give the same input "
            f"(odd frames set to 0) and differ only in the hidden-frame loss (MSE over frames "
            f"1, 3 of 5): expected 5 * d(loss_end) = 2 * d(hidden_loss_end), got "
            f"{lhs:.6f} vs {rhs:.6f}")


def _bar_clips(n=4, t=5, size=8):
    """Bars moving one pixel per frame (a different start per clip): a hidden frame is
    exactly half-way between its two visible neighbours."""
    return _moving_bar(n=n, t=t, size=size)


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.1c")
def test_compare_convs_full3d_wins_the_interpolation_race(answers):
    ex = answers("ex11_2")
    videos = _bar_clips()
    zero_guess = float(videos[:, :, 1::2].pow(2).mean())   # predicting 0 on hidden frames: 1.0
    for seed in (0, 2):
        res = ex.compare_convs(videos, kinds=("full3d", "pseudo3d"), width=4, steps=20,
                               lr=1e-2, seed=seed)
        full, pseudo = res["full3d"]["hidden_loss_end"], res["pseudo3d"]["hidden_loss_end"]
        # full 3-D sees the neighbouring frames from the first step; pseudo-3D starts as a
        # frame-by-frame 2-D conv (temporal identity) and must first learn to mix frames
        assert full < 0.25 * zero_guess, (
            f"seed {seed}: after 20 steps the full 3-D network should fill in the hidden "
            f"frames from their neighbours (hidden MSE < 0.25, predicting 0 gives "
            f"{zero_guess:.2f}), got {full:.4f}")
        assert full < 0.6 * pseudo, (
            f"seed {seed}: full 3-D should clearly beat the temporal-identity pseudo-3D on the "
            f"hidden frames after 20 steps: {full:.4f} vs {pseudo:.4f}")


# =========================================================================== Exercise 11.2.2a
# sparse_attention_mask(t, h, w, local, global_stride, temporal_stride)

@pytest.mark.points(1)
@pytest.mark.exercise("11.2.2a")
def test_sparse_mask_local_band(answers):
    ex = answers("ex11_2")
    m = ex.sparse_attention_mask(4, 1, 1, local=(1, 0, 0))
    want = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]], dtype=torch.bool)
    assert m.dtype == torch.bool and m.shape == (4, 4), f"expected a (4, 4) bool mask, got {m.dtype} {tuple(m.shape)}"
    assert torch.equal(m, want), f"4 frames, temporal radius 1: expected a band\n{want.int()}\ngot\n{m.int()}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.2a")
def test_sparse_mask_spatial_neighbourhood(answers):
    ex = answers("ex11_2")
    m = ex.sparse_attention_mask(1, 3, 3, local=(0, 1, 1))
    assert m.shape == (9, 9)
    assert m[4].all(), "the centre of a 3x3 frame sees all 9 tokens with radius 1"
    corner = torch.zeros(9, dtype=torch.bool)
    corner[[0, 1, 3, 4]] = True
    assert torch.equal(m[0], corner), f"token (0, 0) sees (0,0), (0,1), (1,0), (1,1); got {m[0].int().tolist()}"
    assert torch.equal(m, m.T), "a local pattern is symmetric"


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.2a")
def test_sparse_mask_global_tokens(answers):
    ex = answers("ex11_2")
    m = ex.sparse_attention_mask(4, 1, 1, local=(0, 0, 0), global_stride=(2, 1, 1))
    # tokens 0 and 2 are global: they see everything and everything sees them
    want = torch.eye(4, dtype=torch.bool)
    want[:, [0, 2]] = True
    want[[0, 2], :] = True
    assert torch.equal(m, want), f"expected\n{want.int()}\ngot\n{m.int()}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.2a")
def test_sparse_mask_temporal_stride(answers):
    ex = answers("ex11_2")
    t, h, w = 6, 1, 2
    m = ex.sparse_attention_mask(t, h, w, local=(0, 0, 0), temporal_stride=3)

    def idx(ti, yi, xi):
        return (ti * h + yi) * w + xi

    assert m[idx(0, 0, 0), idx(3, 0, 0)], "same pixel, 3 frames apart: attended"
    assert not m[idx(0, 0, 0), idx(3, 0, 1)], "another pixel 3 frames apart: not attended"
    assert not m[idx(0, 0, 0), idx(1, 0, 0)], "same pixel, 1 frame apart: not attended"
    assert m[idx(5, 0, 1), idx(2, 0, 1)] and m.diagonal().all()
    assert int(m.sum()) == 12 + 12, "each of the 12 tokens sees itself and one strided partner"


# =========================================================================== Exercise 11.2.2b
# divided_attention(x, attend, attend_time=None, order="space_time")

def _max_attend(tok):
    """A toy non-linear token mixer: every token becomes the max over its sequence."""
    return tok.amax(dim=1, keepdim=True).expand_as(tok)


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.2b")
def test_divided_attention_hand_worked(answers):
    ex = answers("ex11_2")
    # one channel, 2 frames of 1x2 pixels: frame 0 = [1, 3], frame 1 = [7, 5]
    x = torch.tensor([[1.0, 3.0], [7.0, 5.0]]).reshape(1, 1, 2, 1, 2)
    # space first: frames -> [1+3, 3+3] = [4, 6] and [7+7, 5+7] = [14, 12];
    # then time: pixel 0 [4, 14] -> +14 -> [18, 28]; pixel 1 [6, 12] -> +12 -> [18, 24]
    st = ex.divided_attention(x, _max_attend)
    assert torch.allclose(st.reshape(2, 2), torch.tensor([[18.0, 18.0], [28.0, 24.0]])), (
        f"space_time: expected frames [18, 18] and [28, 24], got {st.reshape(2, 2).tolist()}")
    # time first: pixel 0 [1, 7] -> [8, 14]; pixel 1 [3, 5] -> [8, 10];
    # then space: frame 0 [8, 8] -> [16, 16]; frame 1 [14, 10] -> [28, 24]
    ts = ex.divided_attention(x, _max_attend, order="time_space")
    assert torch.allclose(ts.reshape(2, 2), torch.tensor([[16.0, 16.0], [28.0, 24.0]])), (
        f"time_space: expected frames [16, 16] and [28, 24], got {ts.reshape(2, 2).tolist()}")


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.2b")
def test_divided_attention_sequence_shapes_and_attend_time(answers):
    ex = answers("ex11_2")
    seen = []

    def spy(tok):
        seen.append(tuple(tok.shape))
        return torch.zeros_like(tok)

    x = _video(b=2, c=3, t=4, h=2, w=3)
    out = ex.divided_attention(x, spy)
    assert seen == [(8, 6, 3), (12, 4, 3)], (
        f"for x (2, 3, 4, 2, 3) expected a spatial call on (b t, h w, c) = (8, 6, 3) then a "
        f"temporal call on (b h w, t, c) = (12, 4, 3); got {seen}")
    assert torch.allclose(out, x), "a mixer that returns zeros leaves x unchanged (residuals)"
    # attend_time replaces the mixer of the temporal step only
    out = ex.divided_attention(x, lambda tok: torch.zeros_like(tok),
                               attend_time=lambda tok: tok.mean(1, keepdim=True).expand_as(tok))
    assert torch.allclose(out, x + x.mean(2, keepdim=True), atol=1e-6)


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.2b")
def test_divided_attention_equals_per_frame_then_per_pixel_loops(answers):
    ex = answers("ex11_2")
    g = torch.Generator().manual_seed(0)
    c = 4
    wq, wk, wv = (torch.randn(c, c, generator=g) * 0.5 for _ in range(3))

    def attend(tok):  # single-head softmax attention on (B, L, c)
        return F.scaled_dot_product_attention(tok @ wq, tok @ wk, tok @ wv)

    x = _video(b=2, c=c, t=3, h=2, w=2, seed=5)
    # reference: explicit loops, one frame / one pixel trajectory at a time
    y = x.clone()
    for b in range(2):
        for t in range(3):
            tok = y[b, :, t].reshape(c, -1).T[None]          # (1, h w, c)
            y[b, :, t] += attend(tok)[0].T.reshape(c, 2, 2)
    z = y.clone()
    for b in range(2):
        for i in range(2):
            for j in range(2):
                tok = y[b, :, :, i, j].T[None]               # (1, t, c)
                z[b, :, :, i, j] += attend(tok)[0].T
    out = ex.divided_attention(x, attend)
    assert torch.allclose(out, z, atol=1e-5), "divided attention differs from the explicit loops"


# =========================================================================== Exercise 11.2.2c
# attention_pattern_stats(weights, t, h, w)

@pytest.mark.points(1)
@pytest.mark.exercise("11.2.2c")
def test_pattern_stats_identity_and_uniform(answers):
    ex = answers("ex11_2")
    t, h, w = 3, 2, 2
    n = t * h * w
    s = ex.attention_pattern_stats(torch.eye(n), t, h, w)
    assert torch.allclose(s["temporal"], torch.eye(3)) and torch.allclose(s["spatial"], torch.eye(4))
    assert s["same_frame"] == pytest.approx(1.0) and s["temporal_distance"] == pytest.approx(0.0)
    assert s["locality"] == pytest.approx(0.0)
    assert s["temporal_entropy"] == pytest.approx(0.0, abs=1e-5)
    assert s["spatial_entropy"] == pytest.approx(0.0, abs=1e-5)
    u = ex.attention_pattern_stats(torch.full((n, n), 1.0 / n), t, h, w)
    assert torch.allclose(u["temporal"], torch.full((3, 3), 1 / 3))
    assert u["same_frame"] == pytest.approx(1 / 3)
    assert u["temporal_distance"] == pytest.approx(8 / 9, abs=1e-5)  # mean |i - j| over 3x3
    assert u["locality"] == pytest.approx(1.0, abs=1e-5)
    assert u["temporal_entropy"] == pytest.approx(1.0, abs=1e-5)
    assert u["spatial_entropy"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.2c")
def test_pattern_stats_previous_frame(answers):
    ex = answers("ex11_2")
    t, h, w = 3, 1, 2
    a = torch.zeros(6, 6)
    for ti in range(3):  # every query looks at the same pixel one frame back (frame 0: itself)
        for x in range(2):
            a[ti * 2 + x, max(ti - 1, 0) * 2 + x] = 1.0
    s = ex.attention_pattern_stats(a, t, h, w)
    assert torch.allclose(s["temporal"], torch.tensor([[1.0, 0, 0], [1, 0, 0], [0, 1, 0]]))
    assert s["same_frame"] == pytest.approx(1 / 3)
    assert s["temporal_distance"] == pytest.approx(2 / 3, abs=1e-5)
    assert s["locality"] == pytest.approx(0.75, abs=1e-5)  # (2/3) / (8/9)
    assert torch.allclose(s["spatial"], torch.eye(2))


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.2c")
def test_pattern_stats_mixed_map(answers):
    ex = answers("ex11_2")
    # t=2, h=1, w=2; tokens (f0,p0), (f0,p1), (f1,p0), (f1,p1)
    a = torch.tensor([[0.5, 0.0, 0.5, 0.0],
                      [0.0, 1.0, 0.0, 0.0],
                      [0.25, 0.25, 0.25, 0.25],
                      [0.0, 0.0, 0.0, 1.0]])
    s = ex.attention_pattern_stats(a[None, None].expand(2, 3, 4, 4), 2, 1, 2)  # leading axes
    # frame 0 queries put (0.5 + 1) / 2 = 0.75 on frame 0; frame 1 queries (0.5 + 1) / 2 on frame 1
    assert torch.allclose(s["temporal"], torch.tensor([[0.75, 0.25], [0.25, 0.75]]))
    assert torch.allclose(s["spatial"], torch.tensor([[0.75, 0.25], [0.0, 1.0]]))
    h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(2)  # 0.8113
    assert s["same_frame"] == pytest.approx(0.75)
    assert s["temporal_distance"] == pytest.approx(0.25)
    assert s["locality"] == pytest.approx(0.5)
    assert s["temporal_entropy"] == pytest.approx(h2, abs=1e-4)
    assert s["spatial_entropy"] == pytest.approx(h2 / 2, abs=1e-4)


# =========================================================================== Exercise 11.2.3a
# feature_change_profile(fn, video, frame, delta=1.0)

def _depthwise_temporal(kernel, c=2):
    """Conv3d (k, 1, 1), one filter per channel, no bias, weights ``kernel``."""
    k = len(kernel)
    conv = nn.Conv3d(c, c, (k, 1, 1), padding=(k // 2, 0, 0), groups=c, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(kernel, dtype=torch.float32).reshape(1, 1, k, 1, 1))
    return conv


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.3a")
def test_change_profile_identity_and_causal(answers):
    ex = answers("ex11_2")
    x = _video(b=1, c=2, t=5, h=2, w=2)
    p = ex.feature_change_profile(lambda v: v, x, 2, delta=0.5)
    want = torch.zeros(5)
    want[2] = 0.5 * math.sqrt(8)  # 8 values per frame, each moved by 0.5
    assert torch.allclose(p.float(), want, atol=1e-5), f"identity: expected {want.tolist()}, got {p.tolist()}"
    p = ex.feature_change_profile(lambda v: torch.cumsum(v, dim=2), x, 2, delta=1.0)
    want = torch.tensor([0, 0, 1, 1, 1.0]) * math.sqrt(8)
    assert torch.allclose(p.float(), want, atol=1e-5), f"cumulative sum over time: expected {want.tolist()}, got {p.tolist()}"


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.3a")
def test_change_profile_temporal_conv_hand_worked(answers):
    ex = answers("ex11_2")
    conv = _depthwise_temporal([1.0, 2.0, 3.0])
    x = _video(b=1, c=2, t=6, h=2, w=2)
    # y[j] = 1 x[j-1] + 2 x[j] + 3 x[j+1]: moving x[3] by 1 moves y[4] by 1, y[3] by 2, y[2] by 3
    p = ex.feature_change_profile(conv, x, 3)
    want = torch.tensor([0, 0, 3, 2, 1, 0.0]) * math.sqrt(8)
    assert torch.allclose(p.float(), want, atol=1e-4), f"expected {want.tolist()}, got {p.tolist()}"
    # a layer with fewer output frames: average of frame pairs
    p = ex.feature_change_profile(lambda v: F.avg_pool3d(v, (2, 1, 1)), x, 3)
    assert torch.allclose(p.float(), torch.tensor([0, 0.5 * math.sqrt(8), 0]), atol=1e-5)


# =========================================================================== Exercise 11.2.3b
# gradient_receptive_field(fn, video, frame), effective_span(profile, mass=0.9)

@pytest.mark.points(2)
@pytest.mark.exercise("11.2.3b")
def test_gradient_rf_single_conv(answers):
    ex = answers("ex11_2")
    conv = _depthwise_temporal([1.0, 2.0, 1.0])
    x = _video(b=2, c=2, t=6, h=3, w=3)
    g = ex.gradient_receptive_field(conv, x, 3)
    assert torch.allclose(g.float(), torch.tensor([0, 0, 0.25, 0.5, 0.25, 0]), atol=1e-5), g.tolist()
    # at the border the zero padding cuts the kernel: y[0] = 2 x[0] + 1 x[1]
    g = ex.gradient_receptive_field(conv, x, 0)
    assert torch.allclose(g.float(), torch.tensor([2 / 3, 1 / 3, 0, 0, 0, 0]), atol=1e-5), g.tolist()


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.3b")
def test_gradient_rf_stacked_and_per_frame(answers):
    ex = answers("ex11_2")
    conv = _depthwise_temporal([1.0, 2.0, 1.0])
    x = _video(b=1, c=2, t=7, h=2, w=2)
    # the answer differentiates through fn: torch modules / functions, which run next to it
    g = ex.gradient_receptive_field(nn.Sequential(conv, conv), x, 3)
    want = torch.tensor([0, 1, 4, 6, 4, 1, 0.0]) / 16  # [1 2 1] * [1 2 1]
    assert torch.allclose(g.float(), want, atol=1e-5), f"two stacked convs: expected {want.tolist()}, got {g.tolist()}"
    spatial = nn.Conv3d(2, 3, (1, 3, 3), padding=(0, 1, 1))
    g = ex.gradient_receptive_field(spatial, x, 5)
    assert torch.allclose(g.float(), torch.eye(7)[5], atol=1e-6), "a per-frame layer sees one frame"
    g = ex.gradient_receptive_field(functools.partial(torch.mul, other=0.0), x, 2)
    assert torch.equal(g.float(), torch.zeros(7)), "a zero gradient stays all zeros (no NaN)"


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.3b")
def test_effective_span_hand_worked(answers):
    ex = answers("ex11_2")
    p = torch.tensor([0.05, 0.9, 0.05])
    assert ex.effective_span(p, 0.9) == 1
    assert ex.effective_span(p, 0.95) == 2, "0.9 + 0.05 reaches 0.95 with two frames"
    assert ex.effective_span(p, 0.97) == 3
    assert ex.effective_span(torch.tensor([0.25, 0.5, 0.25]), 0.75) == 2
    assert ex.effective_span(torch.tensor([1.0, 2.0, 1.0]), 0.5) == 1, "un-normalised profiles work too"
    assert ex.effective_span(torch.tensor([0.1, 0.2, 0.3, 0.4]), 1.0) == 4
    assert ex.effective_span(torch.zeros(4), 0.9) == 0


# =========================================================================== Exercise 11.2.3c
# find_bottleneck(changes, frame, drop=0.5)

@pytest.mark.points(2)
@pytest.mark.exercise("11.2.3c")
def test_find_bottleneck_hand_worked(answers):
    ex = answers("ex11_2")
    changes = {"a": torch.tensor([0.0, 1.0, 0.0]),   # leak 0
               "b": torch.tensor([0.5, 1.0, 0.5]),   # leak 0.5 (ratio skipped: best so far is 0)
               "c": torch.tensor([1.0, 2.0, 1.0]),   # leak 0.5, ratio 1
               "d": torch.tensor([0.1, 1.0, 0.1]),   # leak 0.1, ratio 0.2  <- bottleneck
               "e": torch.tensor([0.4, 2.0, 0.4])}   # leak 0.2, ratio 0.4
    r = ex.find_bottleneck(changes, frame=1)
    want = {"a": 0.0, "b": 0.5, "c": 0.5, "d": 0.1, "e": 0.2}
    for k, v in want.items():
        assert r["leak"][k] == pytest.approx(v, abs=1e-6), f"leak of {k}: expected {v}, got {r['leak'][k]}"
    assert r["layer"] == "d" and r["ratio"] == pytest.approx(0.2, abs=1e-6) and r["collapsed"] is True


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.3c")
def test_find_bottleneck_no_collapse_and_edge_cases(answers):
    ex = answers("ex11_2")
    grow = {"x": torch.tensor([1.0, 0.1, 0.1]), "y": torch.tensor([1.0, 0.2, 0.2]),
            "z": torch.tensor([1.0, 0.3, 0.3])}  # frame 0 perturbed: leaks 0.1, 0.2, 0.3
    r = ex.find_bottleneck(grow, frame=0)
    assert r["layer"] == "z" and r["ratio"] == pytest.approx(1.5) and r["collapsed"] is False, r
    r = ex.find_bottleneck({"only": torch.tensor([1.0, 0.5])}, frame=0)
    assert r["layer"] is None and r["ratio"] == pytest.approx(1.0) and r["collapsed"] is False
    r = ex.find_bottleneck({"p": torch.tensor([0.2, 0.0, 0.2]), "q": torch.tensor([0.1, 1.0, 0.1])},
                           frame=1)
    assert r["leak"]["p"] == 0.0, "no change at the perturbed frame: leak 0"


# =========================================================================== Exercise 11.2.4a
# make_hybrid_block(dim, heads=2, kernel=3)

@pytest.mark.points(1)
@pytest.mark.exercise("11.2.4a")
def test_hybrid_block_identity_at_init_and_structure(answers):
    ex = answers("ex11_2")
    torch.manual_seed(0)
    block = ex.make_hybrid_block(8, heads=2)
    x = _video(b=2, c=8, t=3, h=4, w=4)
    with torch.no_grad():
        assert torch.allclose(block(x), x, atol=1e-6), "zero-initialised outputs: identity at init"
        answers.remote(randomize, block)
        assert torch.allclose(block(x), block.mix(block.local(x)), atol=1e-5), (
            "forward(x) must be mix(local(x))")
        assert block(x).shape == x.shape
    with pytest.raises(ValueError):
        ex.make_hybrid_block(8, heads=3)


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.4a")
def test_hybrid_local_branch_is_local(answers):
    ex = answers("ex11_2")
    torch.manual_seed(0)
    block = answers.remote(randomize, ex.make_hybrid_block(4, heads=2, kernel=3))
    x = _video(b=1, c=4, t=5, h=5, w=5, seed=3)
    y = x.clone()
    y[:, :, 2, 2, 2] += torch.tensor([2.0, -1.0, 0.5, 1.5])
    with torch.no_grad():
        d = (block.local(y) - block.local(x)).abs().amax(dim=1)[0]  # (t, h, w)
    inside = torch.zeros(5, 5, 5, dtype=torch.bool)
    inside[1:4, 1:4, 1:4] = True
    assert d[~inside].max() == 0, "the conv branch must only reach one voxel in t, h and w"
    assert d[3, 3, 3] > 0 and d[1, 2, 2] > 0, "the conv branch must reach its neighbours"


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.4a")
def test_hybrid_mix_branch_is_global(answers):
    ex = answers("ex11_2")
    torch.manual_seed(0)
    block = answers.remote(randomize, ex.make_hybrid_block(4, heads=2))
    x = _video(b=1, c=4, t=4, h=4, w=4, seed=4)
    y = x.clone()
    # not a constant over channels: a per-token LayerNorm would erase a constant shift
    y[:, :, 0, 0, 0] += torch.tensor([2.0, -1.0, 0.5, 1.5])
    with torch.no_grad():
        d = (block.mix(y) - block.mix(x)).abs().amax(dim=1)[0]
    assert (d > 0).all(), "attention over all t h w tokens: one token influences every token"


# =========================================================================== Exercise 11.2.4b
# motion_mask(video, threshold), adaptive_temporal(x, fn, mask)

@pytest.mark.points(1)
@pytest.mark.exercise("11.2.4b")
def test_motion_mask_hand_worked(answers):
    ex = answers("ex11_2")
    v = torch.zeros(2, 2, 3, 3, 3)
    v[0, 0, 1:, 1, 1] = 1.0   # clip 0: pixel (1, 1) of channel 0 jumps at frame 1: mean diff 0.5
    v[1, :, 2, 0, 2] = 0.4    # clip 1: pixel (0, 2) brightens by 0.4 at frame 2
    m = ex.motion_mask(v, 0.3)
    want = torch.zeros(2, 3, 3, dtype=torch.bool)
    want[0, 1, 1] = True
    want[1, 0, 2] = True
    assert m.dtype == torch.bool and torch.equal(m, want), f"threshold 0.3: expected\n{want}\ngot\n{m}"
    assert not ex.motion_mask(v, 0.5).any(), "0.5 is not > 0.5 and 0.4 is not either"


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.4b")
def test_adaptive_temporal_touches_moving_pixels_only(answers):
    ex = answers("ex11_2")
    x = _video(b=2, c=3, t=4, h=3, w=3, seed=7)
    mask = torch.zeros(2, 3, 3, dtype=torch.bool)
    mask[0, 0, 1] = mask[0, 2, 2] = mask[1, 1, 0] = True
    calls = []

    def fn(seqs):  # a temporal layer on trajectories (M, t, c): running sum over time
        calls.append(tuple(seqs.shape))
        return torch.cumsum(seqs, dim=1)

    out, frac = ex.adaptive_temporal(x, fn, mask)
    assert calls == [(3, 4, 3)], f"fn must be called once on the 3 moving trajectories (3, t, c); got {calls}"
    assert frac == pytest.approx(3 / 18)
    full = torch.cumsum(x, dim=2)
    m5 = mask[:, None, None].expand_as(x)
    assert torch.allclose(out[m5], full[m5], atol=1e-6), "moving pixels get fn applied along time"
    assert torch.equal(out[~m5], x[~m5]), "static pixels are returned unchanged"


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.4b")
def test_adaptive_temporal_static_clip_costs_nothing(answers):
    ex = answers("ex11_2")
    x = _video(b=1, c=2, t=3, h=2, w=2)

    def fn(seqs):
        raise AssertionError("fn must not be called when nothing moves")

    out, frac = ex.adaptive_temporal(x, fn, torch.zeros(1, 2, 2, dtype=torch.bool))
    assert frac == 0 and torch.equal(out, x)


# =========================================================================== Exercise 11.2.4c
# make_fusion_classifier(kind, in_channels, frames, width=8, num_classes=4)

@pytest.mark.points(1)
@pytest.mark.exercise("11.2.4c")
def test_fusion_shapes_and_params(answers):
    ex = answers("ex11_2")
    x = _video(b=2, c=3, t=4, h=8, w=8)
    for kind in ("early", "late"):
        assert tuple(ex.make_fusion_classifier(kind, 3, 4, 8, 5)(x).shape) == (2, 5)
    # early: 9*3*4*8 + 8 + 9*8*8 + 8 + 8*5 + 5   = 1501
    # late:  9*3*8 + 8 + 9*8*8 + 8 + 4*8*5 + 5   = 973
    assert _n_params(ex.make_fusion_classifier("early", 3, 4, 8, 5)) == 1501
    assert _n_params(ex.make_fusion_classifier("late", 3, 4, 8, 5)) == 973
    with pytest.raises(ValueError):
        ex.make_fusion_classifier("middle", 3, 4)


@pytest.mark.points(1)
@pytest.mark.exercise("11.2.4c")
def test_fusion_flops_hand_worked(answers):
    ex = answers("ex11_2")
    x = torch.zeros(1, 3, 4, 8, 8)
    # early: conv1 2*9*12*8*64 + conv2 2*9*8*8*64 + linear 2*8*5           = 184400
    # late:  4 frames * (2*9*3*8*64 + 2*9*8*8*64) + linear 2*32*5            = 405824
    for kind, want in (("early", 184400), ("late", 405824)):
        m = ex.make_fusion_classifier(kind, 3, 4, 8, 5)
        got = answers.remote(count_flops, m, x)   # FlopCounterMode around m(x), next to it
        assert got == want, f"{kind}: expected {want} FLOPs, got {got}"


@pytest.mark.points(2)
@pytest.mark.exercise("11.2.4c")
def test_late_fusion_is_additive_over_frames_early_is_not(answers):
    ex = answers("ex11_2")
    # Late fusion: frames meet only in the final linear layer, so the effect of changing
    # frame 0 does not depend on the other frames. Early fusion mixes frames in the first
    # (non-linear) layer, so it does.
    a, b = _video(b=1, c=3, t=4, h=6, w=6, seed=1), _video(b=1, c=3, t=4, h=6, w=6, seed=2)
    a2, b2 = a.clone(), b.clone()
    new0 = _video(b=1, c=3, t=1, h=6, w=6, seed=3)[:, :, 0]
    a2[:, :, 0] = new0
    b2[:, :, 0] = new0
    b[:, :, 0] = a[:, :, 0]  # a and b share frame 0, differ elsewhere
    for kind, additive in (("late", True), ("early", False)):
        torch.manual_seed(0)
        m = answers.remote(randomize, ex.make_fusion_classifier(kind, 3, 4, 8, 5), std=0.5)
        with torch.no_grad():
            da = m(a2) - m(a)
            db = m(b2) - m(b)
        same = torch.allclose(da, db, atol=1e-4)
        assert same == additive, (
            f"{kind} fusion: the logit change caused by frame 0 should "
            f"{'not ' if not additive else ''}depend on the other frames")
