"""Graded tests for lesson 11.1 (exercises in ``lessons/exercises/ex11_1.py``).

Conventions (see viddiff_mini/grading/plugin.py):
* every test takes the ``answers`` fixture and loads the module with ``answers("ex11_1")``:
  the answer runs in its own process and the test gets plain data back (tensors, numbers);
  what must run next to the answer (autograd through it, a model it trains) goes through
  ``answers.remote(helper, ...)`` with a helper from ``viddiff_mini.grading.drivers``;
* every test carries ``@pytest.mark.points(n)`` and ``@pytest.mark.exercise("11.1.<k><letter>")``;
* tests check properties and hand-worked values with seeded inputs and tolerances, never
  "equals the reference solution"; failure messages say what was expected;
* instructor-only tests carry ``@pytest.mark.hidden`` (or live in ``test_*_hidden.py``).

One section per exercise, in book order.
"""

import pytest
import torch

# torch.utils.checkpoint imports torch._dynamo lazily on first use (seconds on a slow CPU);
# import it at collection so that cost is not charged to a timed test (11.1.2b).
import torch._dynamo  # noqa: F401, E402

from viddiff_mini.grading.drivers import (  # noqa: E402 - run in the answer's process
    Recorder,
    param_grads,
    saved_bytes,
    saved_bytes_and_backward,
    square_sum_grads,
    value_and_grad,
)

# =========================================================================== Exercise 11.1.1a
# interpolate_frames(video, factor, method="linear"|"flow", flow=None, max_shift=4)

def _blob_video(shift_per_frame=(2.0, 0.0), frames=3, size=24, b=1):
    """A smooth Gaussian blob moving by ``shift_per_frame`` (dx, dy) pixels per frame,
    values in [-1, 1]: (b, 3, frames, size, size)."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    out = []
    for i in range(frames):
        cx = size / 2 - 3 + shift_per_frame[0] * i
        cy = size / 2 - 1 + shift_per_frame[1] * i
        g = torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 2.0**2))
        out.append(g * 2 - 1)
    v = torch.stack(out)[None, None].expand(b, 3, -1, -1, -1).clone()
    return v


def _truth_mid(shift_per_frame, size=24):
    """The blob half-way between frame 0 and frame 1: (1, 3, 1, size, size)."""
    half = (shift_per_frame[0] / 2, shift_per_frame[1] / 2)
    return _blob_video(half, frames=2, size=size)[:, :, 1:2]


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1a")
def test_interpolate_shape_and_dtype(answers):
    ex = answers("ex11_1")
    g = torch.Generator().manual_seed(0)
    video = torch.rand(2, 3, 4, 8, 6, generator=g) * 2 - 1
    for method in ("linear", "flow"):
        out = ex.interpolate_frames(video, 3, method=method)
        assert tuple(out.shape) == (2, 3, 10, 8, 6), (
            f"method={method!r}: a (2, 3, 4, 8, 6) video with factor 3 should give "
            f"(b, c, (t-1)*factor+1, h, w) = (2, 3, 10, 8, 6), got {tuple(out.shape)}")
        assert out.dtype == video.dtype, f"method={method!r}: expected dtype {video.dtype}, got {out.dtype}"
    video = torch.zeros(1, 3, 3, 4, 4)
    with pytest.raises(ValueError, match="method"):
        ex.interpolate_frames(video, 2, method="cubic")
    with pytest.raises(ValueError, match="factor"):
        ex.interpolate_frames(video, 0)
    with pytest.raises(ValueError, match="flow"):
        ex.interpolate_frames(video, 2, method="flow", flow=torch.zeros(1, 2, 3, 4, 4))


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1a")
def test_interpolate_keeps_original_frames(answers):
    ex = answers("ex11_1")
    g = torch.Generator().manual_seed(1)
    video = torch.rand(2, 3, 5, 8, 8, generator=g) * 2 - 1
    for method in ("linear", "flow"):
        for factor in (1, 2, 4):
            out = ex.interpolate_frames(video, factor, method=method)
            kept = out[:, :, ::factor]
            assert kept.shape == video.shape and torch.allclose(kept, video, atol=1e-5), (
                f"method={method!r}, factor={factor}: output frames 0, {factor}, "
                f"{2 * factor}, ... should be the input frames unchanged")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1a")
def test_interpolate_linear_hand_worked(answers):
    ex = answers("ex11_1")
    # Frame 0 all -1, frame 1 all +1, frame 2 all 0; factor 4 -> steps of a quarter.
    video = torch.stack([torch.full((2, 2), v) for v in (-1.0, 1.0, 0.0)])[None, None]
    out = ex.interpolate_frames(video, 4, method="linear")
    got = out[0, 0, :, 0, 0]
    want = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])
    assert torch.allclose(got, want, atol=1e-5), (
        f"linear blending of constant frames -1, 1, 0 with factor 4 should give "
        f"{want.tolist()}, got {[round(x, 4) for x in got.tolist()]}")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1a")
def test_interpolate_flow_given_moves_the_blob(answers):
    ex = answers("ex11_1")
    shift = (2.0, 0.0)
    video = _blob_video(shift)
    flow = torch.zeros(1, 2, 2, 24, 24)
    flow[:, 0] = shift[0]
    mid = ex.interpolate_frames(video, 2, method="flow", flow=flow)[:, :, 1:2]
    truth = _truth_mid(shift)
    inner = (slice(None), slice(None), slice(None), slice(4, -4), slice(4, -4))
    err = (mid - truth)[inner].abs().max().item()
    ghost = ((video[:, :, :1] + video[:, :, 1:2]) / 2 - truth)[inner].abs().max().item()
    assert err < 0.02, (
        f"with the true flow (2 px right per frame) the middle frame should show the blob "
        f"moved 1 px right (max error away from the border < 0.02), got max error {err:.3f} "
        f"(plain blending would give {ghost:.3f})")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1a")
def test_interpolate_flow_estimated_beats_blending(answers):
    ex = answers("ex11_1")
    shift = (2.0, -2.0)
    video = _blob_video(shift)
    truth = _truth_mid(shift)
    mid_flow = ex.interpolate_frames(video, 2, method="flow")[:, :, 1:2]
    mid_lin = ex.interpolate_frames(video, 2, method="linear")[:, :, 1:2]
    e_flow = (mid_flow - truth).abs().mean().item()
    e_lin = (mid_lin - truth).abs().mean().item()
    assert e_flow < 0.25 * e_lin, (
        f"for a blob moving (2, -2) px per frame with flow=None, method='flow' should "
        f"estimate the motion and beat plain blending clearly (mean error < 1/4 of "
        f"linear's {e_lin:.4f}), got {e_flow:.4f}")


# =========================================================================== Exercise 11.1.1b
# temporal_consistency_loss(pred, target=None, flow=None) -> scalar

def _grey_clip(values, size=4):
    """(1, 3, t, size, size) clip whose frame i is the constant values[i]."""
    return torch.tensor(values, dtype=torch.float32)[None, None, :, None, None].expand(
        1, 3, len(values), size, size).clone()


def _blob_on_zero(shift=2, frames=3, size=24):
    """A blob (values in [0, 0.8]) on a 0 background, moving ``shift`` px right per frame,
    far from the borders: (1, 3, frames, size, size)."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    out = [0.8 * torch.exp(-((xs - 8 - shift * i) ** 2 + (ys - 12) ** 2) / (2 * 1.5**2))
           for i in range(frames)]
    return torch.stack(out)[None, None].expand(1, 3, -1, -1, -1).clone()


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1b")
def test_temporal_loss_hand_worked(answers):
    ex = answers("ex11_1")
    pred = _grey_clip([0.0, 0.5, 0.5])
    got = float(ex.temporal_consistency_loss(pred))
    assert abs(got - 0.125) < 1e-6, (
        f"without target, frames 0, 0.5, 0.5 change by 0.5 then 0: mean square = 0.125, got {got}")
    target = _grey_clip([0.0, 0.0, 0.0])
    pred = _grey_clip([0.0, 0.2, 0.0])
    got = float(ex.temporal_consistency_loss(pred, target))
    assert abs(got - 0.04) < 1e-6, (
        f"pred frames 0, 0.2, 0 against a constant target change by +0.2 and -0.2 more than "
        f"the target: mean square = 0.04, got {got}")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1b")
def test_temporal_loss_ignores_offsets_catches_flicker(answers):
    ex = answers("ex11_1")
    g = torch.Generator().manual_seed(3)
    target = torch.rand(2, 3, 5, 8, 8, generator=g) * 1.6 - 0.8
    shifted = target + 0.15   # same changes over time: no temporal error
    got = float(ex.temporal_consistency_loss(shifted, target))
    assert got < 1e-10, f"pred = target + constant has the target's temporal changes: loss 0, got {got}"
    flicker = target.clone()
    flicker[:, :, 2] += 0.2    # one frame brighter
    got = float(ex.temporal_consistency_loss(flicker, target))
    assert got > 1e-3, f"a frame that jumps in brightness must be penalised, got loss {got}"


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1b")
def test_temporal_loss_flow_compensates_motion(answers):
    ex = answers("ex11_1")
    video = _blob_on_zero(shift=2)
    flow = torch.zeros(1, 2, 2, 24, 24)
    flow[:, 0] = 2.0   # true motion: 2 px right per frame
    plain = float(ex.temporal_consistency_loss(video))
    warped = float(ex.temporal_consistency_loss(video, flow=flow))
    assert plain > 1e-3, f"a moving blob changes frame to frame: loss without flow > 0, got {plain}"
    assert warped < 1e-6 * max(plain, 1.0) + 1e-8, (
        f"with the true flow (2 px right), warping frame i+1 back explains all change: "
        f"loss ~ 0, got {warped} (without flow {plain})")


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1b")
def test_temporal_loss_is_differentiable_scalar(answers):
    ex = answers("ex11_1")
    g = torch.Generator().manual_seed(4)
    pred = torch.rand(1, 3, 4, 6, 6, generator=g) * 2 - 1
    target = torch.rand(1, 3, 4, 6, 6, generator=g) * 2 - 1
    # loss = temporal_consistency_loss(pred, target); loss.backward(), next to the answer
    loss, grad = answers.remote(value_and_grad, ex.temporal_consistency_loss, pred, target)
    assert isinstance(loss, torch.Tensor) and loss.ndim == 0, "expected a 0-dim tensor"
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, (
        "the loss must keep the graph: gradients w.r.t. pred should be finite and non-zero")
    one = ex.temporal_consistency_loss(torch.zeros(1, 3, 1, 4, 4))
    assert float(one) == 0.0, "a one-frame clip has no change: loss 0"
    pred = torch.zeros(1, 3, 4, 6, 6)
    with pytest.raises(ValueError):
        ex.temporal_consistency_loss(pred, torch.zeros(1, 3, 3, 6, 6))
    with pytest.raises(ValueError):
        ex.temporal_consistency_loss(pred, flow=torch.zeros(1, 2, 4, 6, 6))
    with pytest.raises(ValueError):
        ex.temporal_consistency_loss(torch.zeros(3, 4, 6, 6))


# =========================================================================== Exercise 11.1.1c
# detect_temporal_failures(video, flicker_threshold=0.02, drift_threshold=0.2) -> dict

@pytest.mark.points(2)
@pytest.mark.exercise("11.1.1c")
def test_failures_hand_worked(answers):
    ex = answers("ex11_1")
    clips = torch.cat([_grey_clip([0.0, 0.2, 0.0, 0.2, 0.0]),       # flicker
                       _grey_clip([-0.5, -0.25, 0.0, 0.25, 0.5]),   # slow fade: drift
                       _grey_clip([0.3] * 5)])                       # steady
    out = ex.detect_temporal_failures(clips)
    flick = out["flicker"].tolist()
    drift = out["drift"].tolist()
    assert flick == pytest.approx([0.4, 0.0, 0.0], abs=1e-5), (
        f"flicker = mean |2nd difference| of brightness: [0.4, 0, 0] expected, got {flick}")
    assert drift == pytest.approx([0.0, 1.0, 0.0], abs=1e-5), (
        f"drift = |last - first| brightness: [0, 1, 0] expected, got {drift}")
    assert out["flickering"].tolist() == [True, False, False], f"flags: {out['flickering']}"
    assert out["drifting"].tolist() == [False, True, False], f"flags: {out['drifting']}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1c")
def test_failures_thresholds_are_strict(answers):
    ex = answers("ex11_1")
    clip = _grey_clip([0.0, 0.1, 0.0, 0.1, 0.0])   # flicker 0.2, drift 0
    out = ex.detect_temporal_failures(clip, flicker_threshold=0.25)
    assert not bool(out["flickering"][0]), "flicker 0.2 is below a threshold of 0.25"
    out = ex.detect_temporal_failures(clip, flicker_threshold=0.1)
    assert bool(out["flickering"][0]), "flicker 0.2 is above a threshold of 0.1"
    fade = _grey_clip([0.0, 0.05, 0.1, 0.15])       # drift 0.15
    assert not bool(ex.detect_temporal_failures(fade)["drifting"][0]), "0.15 < default 0.2"
    assert bool(ex.detect_temporal_failures(fade, drift_threshold=0.1)["drifting"][0])


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1c")
def test_failures_on_moving_shapes(answers):
    from viddiff_mini.data.synthetic import render_batch

    ex = answers("ex11_1")
    video = render_batch([6428], frames=12, size=32)["video"]   # MoveRightSquare, test split
    out = ex.detect_temporal_failures(video)
    assert not bool(out["flickering"][0]), (
        f"a square moving on a fixed background is not flicker, got score {float(out['flicker'][0]):.4f}")
    g = torch.Generator().manual_seed(0)
    offsets = (torch.rand(1, 1, 12, 1, 1, generator=g) * 2 - 1) * 0.15
    bad = (video + offsets).clamp(-1, 1)
    out = ex.detect_temporal_failures(bad)
    assert bool(out["flickering"][0]), (
        f"random per-frame brightness offsets of +-0.15 must be flagged, score "
        f"{float(out['flicker'][0]):.4f}")
    with pytest.raises(ValueError):
        ex.detect_temporal_failures(video[0])


# =========================================================================== Exercise 11.1.2a
# representation_bytes(shape, dtype=torch.float32) -> {"rgb", "flow", "keyframe_flow"}

@pytest.mark.points(2)
@pytest.mark.exercise("11.1.2a")
def test_representation_bytes_hand_worked(answers):
    ex = answers("ex11_1")
    got = ex.representation_bytes((1, 3, 16, 64, 64))
    want = {"rgb": 786432, "flow": 491520, "keyframe_flow": 540672}
    assert {k: got.get(k) for k in want} == want, f"float32 (1, 3, 16, 64, 64): expected {want}, got {got}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.2a")
def test_representation_bytes_dtype_and_batch(answers):
    ex = answers("ex11_1")
    shape = (2, 3, 8, 10, 12)
    f32 = ex.representation_bytes(shape, torch.float32)
    for dtype, div in ((torch.float16, 2), (torch.bfloat16, 2), (torch.uint8, 4)):
        got = ex.representation_bytes(shape, dtype)
        for k in ("rgb", "flow", "keyframe_flow"):
            assert got[k] * div == f32[k], f"{dtype}: {k} should be float32's / {div}"
    one = ex.representation_bytes((1, 3, 8, 10, 12), torch.float32)
    assert all(f32[k] == 2 * one[k] for k in one), "bytes grow linearly with the batch"
    assert f32["rgb"] == 2 * 3 * 8 * 10 * 12 * 4


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.2a")
def test_representation_bytes_edge_cases(answers):
    ex = answers("ex11_1")
    single = ex.representation_bytes((1, 3, 1, 4, 4), torch.float32)
    assert single["flow"] == 0 and single["keyframe_flow"] == single["rgb"] == 192, (
        f"one frame has no flow; key frame + flow = the frame: got {single}")
    with pytest.raises(ValueError):
        ex.representation_bytes((3, 16, 64, 64))
    with pytest.raises(ValueError):
        ex.representation_bytes((1, 3, 0, 64, 64))


# reconstruct_from_flow(keyframe (b, c, h, w), flow (b, 2, t - 1, h, w)) -> (b, c, t, h, w)

@pytest.mark.points(2)
@pytest.mark.exercise("11.1.2a")
def test_reconstruct_from_flow_hand_worked(answers):
    ex = answers("ex11_1")
    row = torch.arange(6, dtype=torch.float32)
    key = row.expand(1, 1, 2, 6).clone()                     # (b=1, c=1, h=2, w=6)
    flow = torch.zeros(1, 2, 3, 2, 6)
    flow[:, 0, 0], flow[:, 0, 1], flow[:, 0, 2] = 1.0, 1.0, -2.0   # dx per pair, dy = 0
    out = ex.reconstruct_from_flow(key, flow)
    assert tuple(out.shape) == (1, 1, 4, 2, 6), f"(1, 1, h, w) + 3 flows -> (1, 1, 4, 2, 6), got {tuple(out.shape)}"
    # frame_{i+1}(x) = frame_i(x - dx), border padding: what leaves the frame is lost
    want = [[0, 1, 2, 3, 4, 5], [0, 0, 1, 2, 3, 4], [0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 3, 3]]
    got = out[0, 0, :, 0].tolist()
    assert got == [pytest.approx(w, abs=1e-5) for w in want], (
        f"row 0..5 moved by dx = +1, +1, -2 (each step warps the previous reconstructed "
        f"frame, border padding) should give {want}, got {[[round(v, 3) for v in f] for f in got]}")
    half = torch.zeros(1, 2, 1, 2, 6)
    half[:, 0] = 0.5
    got = ex.reconstruct_from_flow(key, half)[0, 0, 1, 0].tolist()
    assert got == pytest.approx([0, 0.5, 1.5, 2.5, 3.5, 4.5], abs=1e-5), (
        f"a half-pixel move samples between pixels (bilinear): expected "
        f"[0, 0.5, 1.5, 2.5, 3.5, 4.5], got {got}")
    assert torch.equal(ex.reconstruct_from_flow(key, torch.zeros(1, 2, 0, 2, 6))[:, :, 0], key)
    with pytest.raises(ValueError):
        ex.reconstruct_from_flow(key, torch.zeros(1, 2, 3, 2, 5))   # width mismatch


def _wave(frames, size=24, shift=2):
    """A smooth blob (values in [0, 0.6], a seeded colour) moving ``shift`` px right per
    frame, far from the borders so nothing enters or leaves: (1, 3, frames, size, size)."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    g = torch.Generator().manual_seed(21)
    amp = torch.rand(3, generator=g) * 0.3 + 0.3            # seeded colour per channel
    out = []
    for i in range(frames):
        cx = 8 + shift * i
        blob = torch.exp(-((xs - cx) ** 2 + (ys - 12) ** 2) / (2 * 2.0**2))
        out.append(amp[:, None, None] * blob)
    return torch.stack(out, 1)[None]


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.2a")
def test_keyframe_flow_against_rgb_storage(answers):
    ex = answers("ex11_1")
    t = 4
    # 1) pure motion: key frame + flow is cheaper than RGB and rebuilds the clip
    video = _wave(t)
    flow = torch.zeros(1, 2, t - 1, 24, 24)
    flow[:, 0] = 2.0
    nbytes = ex.representation_bytes(tuple(video.shape))
    # RGB: 3 t = 12 planes; key frame + flow: 3 + 2 (t - 1) = 9 planes
    assert nbytes["keyframe_flow"] * 12 == nbytes["rgb"] * 9, (
        f"(1, 3, 4, 24, 24): key frame + flow is 9 planes against RGB's 12, got {nbytes}")
    rebuilt = ex.reconstruct_from_flow(video[:, :, 0], flow)
    err = float((rebuilt - video).pow(2).mean())
    assert err < 1e-8, (
        f"a pattern that only moves (2 px right per frame, integer shifts) is rebuilt exactly "
        f"from its key frame and true flow: MSE ~ 0, got {err:.2e}")
    # 2) appearance change: a fade has no motion; flow cannot represent it
    fade = torch.stack([torch.full((3, 8, 8), 0.1 * i) for i in range(t)], 1)[None]
    rebuilt = ex.reconstruct_from_flow(fade[:, :, 0], torch.zeros(1, 2, t - 1, 8, 8))
    err = float((rebuilt - fade).pow(2).mean())
    # every rebuilt frame is the key frame 0: MSE = mean_i (0.1 i)^2 = 0.01 * (0+1+4+9)/4
    assert err == pytest.approx(0.035, abs=1e-6), (
        f"a fade (brightness 0, 0.1, 0.2, 0.3) with zero flow is rebuilt as four copies of "
        f"the key frame: MSE = 0.035, which RGB storage avoids; got {err:.6f}")


# =========================================================================== Exercise 11.1.2b
# CheckpointedSequential(blocks, segments=None)

def _blocks(seed=0, n=6, width=64):
    torch.manual_seed(seed)
    return [torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.GELU(),
                                torch.nn.Linear(width, width), torch.nn.Tanh())
            for _ in range(n)]


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.2b")
def test_checkpoint_same_outputs(answers):
    ex = answers("ex11_1")
    blocks = _blocks()
    plain = torch.nn.Sequential(*blocks)
    wrapped = ex.CheckpointedSequential(blocks)
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(wrapped(x), plain(x), atol=1e-6), "outputs must equal the plain blocks"
    with torch.no_grad():
        assert torch.allclose(wrapped(x), plain(x), atol=1e-6), "under no_grad as well"
    n_plain = sum(p.numel() for p in plain.parameters())
    n_wrapped = sum(p.numel() for p in wrapped.parameters())
    assert n_wrapped == n_plain, (
        f"the wrapper must register the blocks' parameters (nn.ModuleList): {n_wrapped} vs {n_plain}")
    for bad in (0, 7):
        with pytest.raises(ValueError):
            ex.CheckpointedSequential(_blocks(), segments=bad)


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.2b")
def test_checkpoint_same_gradients(answers):
    ex = answers("ex11_1")
    blocks = _blocks(seed=2)
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(3))
    for segments in (None, 2):
        x1 = x.clone().requires_grad_(True)
        plain = torch.nn.Sequential(*blocks)
        plain(x1).pow(2).sum().backward()
        ref = [p.grad.clone() for p in plain.parameters()]
        plain.zero_grad(set_to_none=True)
        wrapped = ex.CheckpointedSequential(blocks, segments=segments)
        # wrapped(x).pow(2).sum().backward(), next to the answer
        got, x2_grad = answers.remote(square_sum_grads, wrapped, x)
        assert len(got) == len(ref) and all(
            g is not None and torch.allclose(g, r, atol=1e-5) for g, r in zip(got, ref)), (
            f"segments={segments}: parameter gradients must equal the plain blocks'")
        assert x2_grad is not None and torch.allclose(x2_grad, x1.grad, atol=1e-5), (
            "input gradients must be equal too")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.2b")
def test_checkpoint_saves_fewer_activations(answers):
    ex = answers("ex11_1")
    blocks = _blocks(seed=4)
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    plain_bytes, _ = saved_bytes(torch.nn.Sequential(*blocks), x)
    # measured next to the answer, then y.sum().backward() there
    ck_bytes, backward_ok = answers.remote(saved_bytes_and_backward,
                                           ex.CheckpointedSequential(blocks), x)
    assert ck_bytes < 0.5 * plain_bytes, (
        f"with torch.utils.checkpoint only each segment's input is kept for backward: saved "
        f"{ck_bytes} bytes vs {plain_bytes} without checkpointing (expected < half)")
    assert backward_ok is True, "backward must still work (recomputation)"


# =========================================================================== Exercise 11.1.2c
# amp_train_step(model, optimizer, x, target, dtype=torch.bfloat16, scaler=None) -> float

def _regression(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    target = x[:, :4] * 0.5 + 0.1
    return x, target


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.2c")
def test_amp_step_updates_params(answers):
    ex = answers("ex11_1")
    # the model (Recorder: two seeded Linear layers) and its optimizer live next to the answer
    model = answers.remote(Recorder)
    opt = answers.remote(torch.optim.SGD, model.parameters(), lr=0.1)
    x, target = _regression()
    twin = Recorder()   # the same start, here
    before = [p.detach().clone() for p in twin.parameters()]
    with torch.no_grad():
        fp32 = torch.nn.functional.mse_loss(twin(x), target).item()
    loss = ex.amp_train_step(model, opt, x, target)
    assert isinstance(loss, float) and loss == loss and abs(loss) != float("inf"), (
        f"expected the loss as a finite Python float, got {loss!r}")
    assert abs(loss - fp32) < 0.05 * fp32 + 1e-3, (
        f"the returned loss should be this step's MSE (float32 value {fp32:.4f}, bf16 "
        f"forward within a few %), got {loss:.4f}")
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters())), (
        "every parameter should change after optimizer.step()")
    grads = answers.remote(param_grads, model)
    assert all(g is not None and torch.isfinite(g).all() for g in grads), (
        "gradients should exist and be finite")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.2c")
def test_amp_step_uses_autocast(answers):
    ex = answers("ex11_1")
    model = answers.remote(Recorder)
    opt = answers.remote(torch.optim.SGD, model.parameters(), lr=0.05)
    x, target = _regression()
    ex.amp_train_step(model, opt, x, target, dtype=torch.bfloat16)
    assert model.seen and model.seen[-1] == torch.bfloat16, (
        f"the forward pass should run under torch.autocast(bfloat16): the Linear output "
        f"was {model.seen[-1] if model.seen else 'never computed'}")
    assert all(p.dtype == torch.float32 for p in model.parameters()), (
        "parameters must stay float32 (autocast casts per op; do not .half() the model)")


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.2c")
def test_amp_steps_reduce_the_loss(answers):
    ex = answers("ex11_1")
    model = answers.remote(Recorder)
    opt = answers.remote(torch.optim.Adam, model.parameters(), lr=1e-2)
    x, target = _regression(2)
    losses = [ex.amp_train_step(model, opt, x, target) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0], (
        f"30 AMP steps on a linear regression should halve the loss: {losses[0]:.4f} -> {losses[-1]:.4f}")


# =========================================================================== Exercise 11.1.3a
# flow_to_color(flow, max_mag=None) -> (..., 3, h, w) in [0, 1]

@pytest.mark.points(2)
@pytest.mark.exercise("11.1.3a")
def test_flow_color_hand_worked(answers):
    ex = answers("ex11_1")
    s = 2 ** -0.5
    vecs = [(1, 0), (0, 1), (-1, 0), (0, -1), (0.5, 0), (0, 0), (s, s)]
    want = [(1, 0, 0), (0.5, 1, 0), (0, 1, 1), (0.5, 0, 1), (1, 0.5, 0.5), (1, 1, 1), (1, 0.75, 0)]
    flow = torch.tensor(vecs, dtype=torch.float32).T.reshape(2, 1, len(vecs))
    rgb = ex.flow_to_color(flow, max_mag=1.0)
    assert tuple(rgb.shape) == (3, 1, len(vecs)), f"(2, h, w) -> (3, h, w), got {tuple(rgb.shape)}"
    got = rgb[:, 0].T
    names = ["right", "down", "left", "up", "half right", "zero", "down-right"]
    for name, g, w in zip(names, got.tolist(), want):
        assert g == pytest.approx(w, abs=1e-4), f"{name}: expected RGB {w}, got {[round(v, 4) for v in g]}"


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.3a")
def test_flow_color_default_scale_and_batch(answers):
    ex = answers("ex11_1")
    flow = torch.zeros(2, 2, 3, 3)
    flow[0, 0, 0, 0] = 4.0      # the fastest pixel: full saturation by default
    flow[0, 0, 1, 1] = 2.0      # half as fast: half saturation
    flow[1, 1, 2, 2] = -8.0     # up, fastest of the whole batch
    rgb = ex.flow_to_color(flow)
    assert tuple(rgb.shape) == (2, 3, 3, 3), f"(n, 2, h, w) -> (n, 3, h, w), got {tuple(rgb.shape)}"
    assert rgb.min() >= 0 and rgb.max() <= 1, "RGB must lie in [0, 1]"
    assert rgb[1, :, 2, 2].tolist() == pytest.approx([0.5, 0, 1], abs=1e-4), "fastest pixel: fully saturated violet"
    assert rgb[0, :, 0, 0].tolist() == pytest.approx([1, 0.5, 0.5], abs=1e-4), (
        "default max_mag is the largest magnitude of the whole input (8): 4 px right is half saturated")
    clipped = ex.flow_to_color(flow, max_mag=2.0)
    assert clipped[0, :, 0, 0].tolist() == pytest.approx([1, 0, 0], abs=1e-4), "beyond max_mag: saturation 1"
    with pytest.raises(ValueError):
        ex.flow_to_color(torch.zeros(3, 4, 4))


# =========================================================================== Exercise 11.1.3b
# decompose_global_local(flow, model="affine", threshold=1.0) -> (global, local)

def _grid(h, w):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    return xs, ys


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.3b")
def test_decompose_pure_camera_motion(answers):
    ex = answers("ex11_1")
    xs, ys = _grid(20, 24)
    # pan (1.5, -0.5) plus a 5% zoom about the centre: an affine field
    u = 1.5 + 0.05 * (xs - 11.5)
    v = -0.5 + 0.05 * (ys - 9.5)
    flow = torch.stack([u, v])[None]
    glob, local = ex.decompose_global_local(flow, model="affine")
    assert local.abs().max() < 1e-3, f"a pure pan + zoom is all global: max |local| {local.abs().max():.4f}"
    assert torch.allclose(glob, flow, atol=1e-3)


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.3b")
def test_decompose_pan_plus_object(answers):
    ex = answers("ex11_1")
    flow = torch.zeros(1, 2, 24, 24)
    flow[:, 0], flow[:, 1] = 2.0, -1.0              # camera pan
    flow[:, 0, 6:14, 4:12] += -4.0                   # an object moving on its own
    flow[:, 1, 6:14, 4:12] += 3.0
    for model in ("translation", "affine"):
        glob, local = ex.decompose_global_local(flow, model=model)
        err = (glob - torch.tensor([2.0, -1.0])[None, :, None, None]).abs().max()
        assert err < 1e-3, (
            f"model={model!r}: the object must not bias the camera fit (refit on inliers); "
            f"global should be (2, -1) everywhere, max error {err:.4f}")
        want = torch.zeros_like(flow)
        want[:, 0, 6:14, 4:12], want[:, 1, 6:14, 4:12] = -4.0, 3.0
        assert torch.allclose(local, want, atol=1e-3), (
            f"model={model!r}: local motion should be (-4, 3) on the object and 0 elsewhere")


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.3b")
def test_decompose_shapes_and_sum(answers):
    ex = answers("ex11_1")
    g = torch.Generator().manual_seed(6)
    flow = torch.randn(3, 2, 10, 12, generator=g)
    glob, local = ex.decompose_global_local(flow, model="translation")
    assert glob.shape == flow.shape and local.shape == flow.shape
    assert torch.allclose(glob + local, flow, atol=1e-5), "global + local must equal the flow"
    spread = (glob - glob[:, :, :1, :1]).abs().max()
    assert spread < 1e-5, "a translation is the same vector at every pixel"
    assert not torch.allclose(glob[0], glob[1]), "each field gets its own fit"
    with pytest.raises(ValueError):
        ex.decompose_global_local(flow, model="homography")
    with pytest.raises(ValueError):
        ex.decompose_global_local(flow[0])


# =========================================================================== Exercise 11.1.3c
# smooth_trajectory(traj, lam=10.0) -> (..., t, 2)

def _acc(traj):
    return (traj[..., 2:, :] - 2 * traj[..., 1:-1, :] + traj[..., :-2, :]).norm(dim=-1).mean()


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.3c")
def test_smooth_keeps_constant_velocity(answers):
    ex = answers("ex11_1")
    t = torch.arange(10, dtype=torch.float32)
    line = torch.stack([3 + 1.5 * t, 20 - 0.5 * t], -1)
    for lam in (1.0, 100.0):
        out = ex.smooth_trajectory(line, lam)
        assert torch.allclose(out, line, atol=1e-4), (
            f"lam={lam}: a constant-velocity path has zero acceleration, so the prior keeps it")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.3c")
def test_smooth_reduces_acceleration(answers):
    ex = answers("ex11_1")
    g = torch.Generator().manual_seed(7)
    t = torch.arange(16, dtype=torch.float32)
    clean = torch.stack([2 * t, 30 - t], -1)
    noisy = clean + torch.randn(2, 3, 16, 2, generator=g)       # batch dims (2, 3)
    out = ex.smooth_trajectory(noisy, 10.0)
    assert out.shape == noisy.shape, f"shape {tuple(noisy.shape)} expected, got {tuple(out.shape)}"
    assert torch.allclose(ex.smooth_trajectory(noisy, 0.0), noisy, atol=1e-5), "lam = 0 returns the input"
    a0, a1, a2 = _acc(noisy), _acc(out), _acc(ex.smooth_trajectory(noisy, 1000.0))
    assert a1 < 0.5 * a0 and a2 < a1, (
        f"the prior must reduce the mean |acceleration|, more for larger lam: input {a0:.3f}, "
        f"lam=10 {a1:.3f}, lam=1000 {a2:.3f}")
    assert (out - clean).abs().mean() < (noisy - clean).abs().mean(), (
        "smoothing a jittered straight path should bring it closer to the straight path")


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.3c")
def test_smooth_hand_worked(answers):
    ex = answers("ex11_1")
    traj = torch.tensor([[0.0, 5.0], [1.0, 5.0], [0.0, 5.0]])
    out = ex.smooth_trajectory(traj, 1.0)
    # (I + D2^T D2) p = (0, 1, 0) with D2 = [1, -2, 1]: p = (2/7, 3/7, 2/7)
    assert out[:, 0].tolist() == pytest.approx([2 / 7, 3 / 7, 2 / 7], abs=1e-4), (
        f"x: solve (I + D2^T D2) p = (0, 1, 0): expected (2/7, 3/7, 2/7), got {out[:, 0].tolist()}")
    assert out[:, 1].tolist() == pytest.approx([5.0, 5.0, 5.0], abs=1e-4)
    with pytest.raises(ValueError):
        ex.smooth_trajectory(traj, -1.0)


# =========================================================================== Exercise 11.1.4a
# quality_check(frames uint8 (t, h, w, c), ...) -> (keep, reason)

def _square_clip(frames=10, bg=100, fg=200, step=2, size=32):
    """uint8 (t, size, size, 3): a bright square moving right on a flat background."""
    clip = torch.full((frames, size, size, 3), bg, dtype=torch.uint8)
    for i in range(frames):
        x = 2 + step * i
        clip[i, 10:18, x:x + 8] = fg
    return clip


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.4a")
def test_quality_keeps_good_clip(answers):
    ex = answers("ex11_1")
    keep, reason = ex.quality_check(_square_clip())
    assert keep is True and reason == "ok", f"a lit clip with motion should pass: got {(keep, reason)}"


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.4a")
def test_quality_reasons_in_order(answers):
    ex = answers("ex11_1")
    cases = {
        "too_short": _square_clip(frames=4),
        "too_dark": _square_clip(bg=5, fg=15),
        "static": torch.full((10, 16, 16, 3), 120, dtype=torch.uint8),
    }
    cut = _square_clip()
    cut[5:] = (cut[5:].int() - 90).clamp(0, 255).to(torch.uint8)   # a hard cut: darker shot
    cut[5:, :, :, 0] = 250
    cases["scene_cut"] = cut
    for reason, clip in cases.items():
        got = ex.quality_check(clip)
        assert tuple(got) == (False, reason), f"expected (False, {reason!r}), got {got}"
    short_dark = _square_clip(frames=3, bg=2, fg=4)
    assert tuple(ex.quality_check(short_dark)) == (False, "too_short"), "checks run in order"
    dark_static = torch.full((10, 8, 8, 3), 3, dtype=torch.uint8)
    assert tuple(ex.quality_check(dark_static)) == (False, "too_dark"), "too_dark comes before static"


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.4a")
def test_quality_no_uint8_wraparound(answers):
    ex = answers("ex11_1")
    clip = torch.full((10, 16, 16, 3), 100, dtype=torch.uint8)
    clip[1::2] = 98        # gentle 2-level flutter: motion, but no cut
    got = ex.quality_check(clip)
    assert tuple(got) == (True, "ok"), (
        f"differences must be taken in float: 98 - 100 is -2, not 254 in uint8 (got {got})")
    with pytest.raises(ValueError):
        ex.quality_check(clip.float())


# =========================================================================== Exercise 11.1.4b
# preprocess_clip(frames uint8 (T, H, W, C), size, num_frames, stride=1) -> (C, n, size, size)

@pytest.mark.points(1)
@pytest.mark.exercise("11.1.4b")
def test_preprocess_shape_range_constant(answers):
    ex = answers("ex11_1")
    clip = torch.empty(20, 48, 64, 3, dtype=torch.uint8)
    clip[..., 0], clip[..., 1], clip[..., 2] = 0, 51, 255
    out = ex.preprocess_clip(clip, size=32, num_frames=4, stride=3)
    assert tuple(out.shape) == (3, 4, 32, 32) and out.dtype == torch.float32, (
        f"expected float32 (3, 4, 32, 32), got {out.dtype} {tuple(out.shape)}")
    want = torch.tensor([-1.0, 51 / 127.5 - 1, 1.0])
    got = out.mean(dim=(1, 2, 3))
    assert torch.allclose(got, want, atol=1e-3), f"constant colours map to {want.tolist()}, got {got.tolist()}"
    assert out.min() >= -1 and out.max() <= 1
    clip = torch.zeros(10, 16, 16, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match="frames"):
        ex.preprocess_clip(clip, size=16, num_frames=4, stride=4)   # needs 13 frames
    with pytest.raises(ValueError):
        ex.preprocess_clip(clip.float(), size=16, num_frames=4)


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.4b")
def test_preprocess_temporal_subsampling(answers):
    ex = answers("ex11_1")
    clip = torch.zeros(30, 16, 16, 3, dtype=torch.uint8)
    for k in range(30):
        clip[k] = 8 * k           # frame index written in its brightness
    out = ex.preprocess_clip(clip, size=16, num_frames=5, stride=4)
    got = ((out.mean(dim=(0, 2, 3)) + 1) * 127.5 / 8).round().tolist()
    assert got == [0, 4, 8, 12, 16], f"stride 4 keeps frames 0, 4, 8, 12, 16; got frames {got}"


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.4b")
def test_preprocess_resize_short_side_and_centre_crop(answers):
    ex = answers("ex11_1")
    clip = torch.zeros(2, 64, 192, 3, dtype=torch.uint8)    # wide: h 64, w 192
    clip[:, :, 64:128] = 255                                 # the middle third is white
    out = ex.preprocess_clip(clip, size=32, num_frames=2)
    assert tuple(out.shape) == (3, 2, 32, 32), f"got {tuple(out.shape)}"
    inner = out[:, :, :, 2:-2]
    assert inner.min() > 0.9, (
        "short side 64 -> 32 makes the frame 32 x 96; the centre crop is exactly the white "
        f"middle third (values ~1), got min {inner.min():.3f}")
    tall = clip.transpose(1, 2).contiguous()                 # h 192, w 64
    out = ex.preprocess_clip(tall, size=32, num_frames=2)
    assert tuple(out.shape) == (3, 2, 32, 32) and out[:, :, 2:-2].min() > 0.9, (
        "portrait frames: resize the short side (width) and crop the middle rows")


# =========================================================================== Exercise 11.1.4c
# make_benchmark(n_per_class, seed=0, fold=1, classes=None) -> [(clip index, label)]

@pytest.mark.points(1)
@pytest.mark.exercise("11.1.4c")
def test_benchmark_balanced_and_labelled(answers):
    from viddiff_mini.data import synthetic

    ex = answers("ex11_1")
    bench = ex.make_benchmark(3, seed=0)
    table = synthetic.clip_index_table()
    assert len(bench) == 3 * 101, f"3 clips x 101 classes = 303 pairs, got {len(bench)}"
    counts = torch.bincount(torch.tensor([lab for _, lab in bench]), minlength=101)
    assert counts.tolist() == [3] * 101, "every class exactly n_per_class times"
    assert all(table[i][0] == lab for i, lab in bench), "each label must be its clip's class"
    assert len({i for i, _ in bench}) == len(bench), "no clip twice"
    assert list(bench) == sorted(bench, key=lambda p: (p[1], p[0])), "sorted by (label, index)"


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.4c")
def test_benchmark_is_disjoint_from_training(answers):
    from viddiff_mini.data import synthetic

    ex = answers("ex11_1")
    table = synthetic.clip_index_table()
    for fold in (1, 2):
        bench = ex.make_benchmark(2, seed=1, fold=fold)
        train = set(synthetic.split_indices("train", fold))
        groups = {table[i][1] for i, _ in bench}
        assert not (train & {i for i, _ in bench}), f"fold {fold}: benchmark clips must not be training clips"
        assert groups <= set(synthetic.TEST_GROUPS[fold]), (
            f"fold {fold}: clips must come from the test groups {list(synthetic.TEST_GROUPS[fold])}, "
            f"got groups {sorted(groups)}")


@pytest.mark.points(2)
@pytest.mark.exercise("11.1.4c")
def test_benchmark_follows_the_documented_seed_rule(answers):
    from viddiff_mini.data import synthetic

    ex = answers("ex11_1")
    table = synthetic.clip_index_table()
    for seed, fold, labels, n in ((0, 1, [0, 3], 4), (7, 2, [50, 100], 3)):
        got = [tuple(p) for p in ex.make_benchmark(n, seed=seed, fold=fold, classes=labels)]
        want = []
        for label in labels:
            # the rule in the docstring: the class's test indices in increasing order,
            # shuffled by randperm with a generator seeded seed * 1000 + label, first n kept
            pool = [i for i in synthetic.split_indices("test", fold) if table[i][0] == label]
            g = torch.Generator().manual_seed(seed * 1000 + label)
            want += [(pool[j], label) for j in torch.randperm(len(pool), generator=g)[:n].tolist()]
        want.sort(key=lambda p: (p[1], p[0]))
        assert got == want, (
            f"seed={seed}, fold={fold}, classes={labels}, n_per_class={n}: the documented rule "
            f"(torch.randperm over the class's sorted test indices with "
            f"torch.Generator().manual_seed(seed * 1000 + label)) picks {want}, got {got}")


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.4c")
def test_benchmark_deterministic_and_seeded(answers):
    ex = answers("ex11_1")
    a = ex.make_benchmark(2, seed=5, classes=[0, 7, 42])
    assert a == ex.make_benchmark(2, seed=5, classes=[0, 7, 42]), "same arguments, same benchmark"
    assert [tuple(p) for p in a] != [tuple(p) for p in ex.make_benchmark(2, seed=6, classes=[0, 7, 42])], (
        "another seed should pick other clips")
    assert sorted({lab for _, lab in a}) == [0, 7, 42]
    sub = ex.make_benchmark(2, seed=5, classes=[7])
    assert [tuple(p) for p in sub] == [tuple(p) for p in a if p[1] == 7], (
        "one generator per class: restricting the classes must not change a class's clips")
    with pytest.raises(ValueError):
        ex.make_benchmark(1000)
