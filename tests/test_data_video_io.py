"""video_io and clips: encode/decode round trips, broken files, clip sampling and pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viddiff_mini.data import clips
from viddiff_mini.data.synthetic import render_batch
from viddiff_mini.data.video_io import CorruptVideoError, probe_video, read_video, write_video


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """A real MovingShapes clip as uint8 (20, 48, 48, 3): textures, edges and motion."""
    return clips.to_uint8_frames(render_batch([123], frames=20, size=48)["video"][0])


@pytest.mark.parametrize("suffix", [".avi", ".mp4", ".gif"])
def test_write_read_round_trip(tmp_path, frames, suffix):
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=25)
    info = probe_video(path)
    assert (info.frames, info.width, info.height) == (20, 48, 48)
    assert info.fps == pytest.approx(25, rel=0.05) and info.duration == pytest.approx(0.8, rel=0.05)
    out = read_video(path)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    err = np.abs(out.astype(int) - frames).mean()
    assert err < 4.0, err                                    # lossy codecs: a few levels of 255
    part = read_video(path, max_frames=5, start=10)          # a range decodes only what it needs
    assert part.shape == (5, 48, 48, 3)
    assert np.abs(part.astype(int) - out[10:15]).max() == 0


def test_avi_is_xvid_mpeg4(tmp_path, frames):
    import av

    path = write_video(tmp_path / "x.avi", frames)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "mpeg4" and s.codec_context.codec_tag == "XVID"


def test_writer_input_checks(tmp_path, frames):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.avi", frames.astype(np.float32))
    with pytest.raises(ValueError, match="suffix"):
        write_video(tmp_path / "a.xyz", frames)
    odd = write_video(tmp_path / "odd.mp4", frames[:3, :45, :47])  # padded to even sizes
    assert probe_video(odd)[2:] == (48, 46)
    grey = write_video(tmp_path / "grey.avi", torch.from_numpy(frames[:4, ..., 0]))
    assert read_video(grey).shape == (4, 48, 48, 3)
    assert not list(tmp_path.glob(".*"))                       # no temp files left behind


def test_corrupt_and_missing_files(tmp_path, frames):
    good = write_video(tmp_path / "good.avi", np.concatenate([frames] * 3))
    data = good.read_bytes()
    garbage = tmp_path / "garbage.avi"
    garbage.write_bytes(np.random.default_rng(0).bytes(4000))
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (garbage, truncated, empty):
        with pytest.raises(CorruptVideoError) as e:
            read_video(path)
        assert e.value.path == str(path) and e.value.reason and str(path) in str(e.value)
        with pytest.raises(CorruptVideoError):
            probe_video(path)
    with pytest.raises(FileNotFoundError, match="nope.avi"):
        read_video(tmp_path / "nope.avi")
    import pickle  # survives DataLoader worker pickling with its fields
    err = pickle.loads(pickle.dumps(CorruptVideoError("a.avi", "why")))
    assert (err.path, err.reason) == ("a.avi", "why")


def test_truncated_webm_is_detected_from_its_header_duration(tmp_path, frames):
    path = write_video(tmp_path / "long.webm", np.concatenate([frames] * 3))
    assert probe_video(path).frames == 60
    cut = tmp_path / "cut.webm"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 6 // 10])
    with pytest.raises(CorruptVideoError, match="truncated|no video"):
        probe_video(cut)


def test_clip_sampling_and_short_video_policy():
    assert clips.clip_span(16, 2) == 31
    assert clips.clip_starts(100, 16, 1, 1, "uniform") == [42]          # the middle
    assert clips.clip_starts(100, 16, 1, 3, "uniform") == [14, 42, 70]
    g = np.random.default_rng(0)
    starts = clips.clip_starts(100, 16, 2, 50, "random", g)
    assert min(starts) >= 0 and max(starts) <= 100 - 31 and len(set(starts)) > 10
    assert clips.clip_starts(100, 16, 2, 4, "random", np.random.default_rng(1)) == \
        clips.clip_starts(100, 16, 2, 4, "random", np.random.default_rng(1))
    assert list(clips.clip_indices(100, 4, 3, start=5)) == [5, 8, 11, 14]
    assert list(clips.clip_indices(5, 8, 1, short="loop")) == [0, 1, 2, 3, 4, 0, 1, 2]
    assert list(clips.clip_indices(5, 8, 1, short="pad")) == [0, 1, 2, 3, 4, 4, 4, 4]
    with pytest.raises(clips.ShortVideoError, match="too short: 5 frames"):
        clips.clip_indices(5, 8, 1, short="skip", path="v.avi")
    with pytest.raises(ValueError, match="short"):
        clips.check_clip_args(8, 64, 1, short="wrap")


def test_resize_crop_and_normalise():
    x = np.zeros((3, 60, 80, 3), np.uint8)
    x[:, :, 6:74] = 200                                    # bright centre, dark sides
    y = clips.resize_center_crop(x, 30)                    # 60x80 -> 30x40 -> centre 30x30
    assert y.shape == (3, 30, 30, 3) and y.dtype == np.uint8
    assert y.min() >= 190                                  # the dark sides were cropped away
    assert clips.resize_center_crop(x, (60, 80)) is x      # already the size: untouched
    v = clips.to_model_video(y)
    assert v.shape == (3, 3, 30, 30) and v.dtype == torch.float32
    assert -1 <= v.min() and v.max() <= 1
    full = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, -1)
    assert clips.to_model_video(full).min() == -1 and clips.to_model_video(full).max() == 1
    assert np.array_equal(clips.to_uint8_frames(clips.to_model_video(full)), full)  # exact
    assert clips.to_model_video(np.stack([y, y])).shape == (2, 3, 3, 30, 30)
    with pytest.raises(ValueError, match="uint8"):
        clips.to_model_video(y.astype(np.float32))
    assert clips.words_of("ApplyEyeMakeup") == "apply eye makeup"
    assert clips.words_of("YoYo") == "yo yo" and clips.words_of("PlayingTV") == "playing tv"
    assert clips.words_of("jump_rope") == "jump rope"
