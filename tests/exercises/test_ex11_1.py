"""Graded tests for lesson 11.1 (exercises in ``lessons/exercises/ex11_1.py``).

Conventions (see viddiff_mini/grading/plugin.py):
* every test takes the ``answers`` fixture and loads the module with ``answers("ex11_1")``;
* every test carries ``@pytest.mark.points(n)`` and ``@pytest.mark.exercise("11.1.<k><letter>")``;
* tests check properties and hand-worked values with seeded inputs and tolerances, never
  "equals the reference solution"; failure messages say what was expected;
* instructor-only tests carry ``@pytest.mark.hidden`` (or live in ``test_*_hidden.py``).

One section per exercise, in book order.
"""

import pytest
import torch


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


@pytest.mark.points(1)
@pytest.mark.exercise("11.1.1a")
def test_interpolate_rejects_bad_arguments(answers):
    ex = answers("ex11_1")
    video = torch.zeros(1, 3, 3, 4, 4)
    with pytest.raises(ValueError, match="method"):
        ex.interpolate_frames(video, 2, method="cubic")
    with pytest.raises(ValueError, match="factor"):
        ex.interpolate_frames(video, 0)
    with pytest.raises(ValueError, match="flow"):
        ex.interpolate_frames(video, 2, method="flow", flow=torch.zeros(1, 2, 3, 4, 4))
