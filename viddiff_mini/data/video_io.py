"""Read and write video files with PyAV: uint8 frames ``(t, h, w, c)`` in, uint8 frames out.

    info = probe_video("v_Bounce_g01_c01.avi")       # VideoInfo(frames=150, fps=25.0, width=320, height=240)
    frames = read_video("v_Bounce_g01_c01.avi")       # uint8 (150, 240, 320, 3)
    write_video("out.avi", frames, fps=25)            # MPEG-4 part 2 tagged XVID, like UCF-101

Why PyAV: it is FFmpeg's decoders and containers with a numpy interface, so AVI (XVID),
MP4 (H.264), WebM, MOV and GIF all go through one code path, and a broken file raises a
Python exception instead of killing the process.

A real data set always holds a few broken files. Every way a file can be unreadable
(garbage bytes, a truncated download, zero decodable frames, an FFmpeg decoding error)
raises one exception type, :class:`CorruptVideoError`, carrying the path and the reason,
so a data set can skip the file, count it and carry on (see ``clips.ClipDataset``).
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mov", ".mkv", ".gif")

# suffix -> (container format, default codec); "mp4" prefers libx264 when FFmpeg has it
_CONTAINERS = {".avi": ("avi", "mpeg4"), ".mp4": ("mp4", "libx264"), ".mov": ("mov", "libx264"),
               ".mkv": ("matroska", "libx264"), ".webm": ("webm", "libvpx")}

# Frames an otherwise complete file may lack against its header's count before it is called
# truncated (some encoders count a trailing empty packet; real UCF-101 files differ by 1-2).
_TOLERANCE = 2


class CorruptVideoError(ValueError):
    """A video file that exists but cannot be decoded (garbage, truncated, no frames).

    ``path`` and ``reason`` are attributes, so a data set can record why it skipped a file.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: corrupt or unreadable video ({reason})")

    def __reduce__(self):  # keep (path, reason) through pickling (DataLoader workers)
        return (type(self), (self.path, self.reason))


class VideoInfo(NamedTuple):
    """What :func:`probe_video` reads from a file's header: no pixels are decoded."""

    frames: int      # number of video frames
    fps: float       # frames per second
    width: int
    height: int

    @property
    def duration(self) -> float:
        """Seconds (frames / fps)."""
        return self.frames / self.fps if self.fps > 0 else 0.0


# --------------------------------------------------------------------------- reading
def _check_exists(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    return path


@contextlib.contextmanager
def _open(path: Path):
    """``av.open`` for reading whose failures become :class:`CorruptVideoError`."""
    try:
        container = av.open(str(path), "r")
    except av.FFmpegError as e:
        raise CorruptVideoError(path, f"cannot open: {e.strerror or e}") from e
    try:
        if not container.streams.video:
            raise CorruptVideoError(path, "no video stream")
        yield container
    finally:
        container.close()


def _fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, fps and size of a video without decoding pixels.

    AVI and MP4 store the frame count in the header. WebM and GIF do not, so their packets
    are counted by demuxing (reading the file, but no decoding). A header duration that
    promises clearly more frames than the file holds means a truncated file and raises
    :class:`CorruptVideoError`, as do unreadable files; a missing file raises
    ``FileNotFoundError``.
    """
    path = _check_exists(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = _fps(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        frames = int(stream.frames or 0)
        if frames == 0:  # no count in the header: count packets (cheap: no decoding)
            try:
                frames = sum(1 for p in container.demux(stream) if p.size)
            except av.FFmpegError as e:
                raise CorruptVideoError(path, f"cannot demux: {e.strerror or e}") from e
            if container.duration and fps > 0:
                promised = round(container.duration / 1e6 * fps)
                if promised - frames > max(_TOLERANCE, 0.1 * promised):
                    raise CorruptVideoError(path, f"truncated: header promises ~{promised} "
                                                  f"frames, file holds {frames}")
    if frames == 0:
        raise CorruptVideoError(path, "no video frames")
    return VideoInfo(frames, fps, width, height)


def read_video(path: str | os.PathLike, max_frames: int | None = None,
               start: int = 0) -> np.ndarray:
    """Decode frames ``[start, start + max_frames)`` of a video (all of them by default).

    Returns uint8 numpy ``(t, h, w, 3)`` RGB. Works for every container FFmpeg reads (AVI,
    MP4, WebM, MOV, GIF). Frames before ``start`` are decoded and dropped (no seeking:
    keyframe seeking in AVI/XVID is not frame accurate, and clips are short).

    Raises ``FileNotFoundError`` for a missing file and :class:`CorruptVideoError` when the
    file cannot be opened, a decoder error occurs, no frame decodes, or the decoded frames
    stop clearly short of the count in the file's header (a truncated file).
    """
    path = _check_exists(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: expected None or an int >= 1, got {max_frames!r}")
    if start < 0:
        raise ValueError(f"start: expected an int >= 0, got {start!r}")
    out: list[np.ndarray] = []
    # One reformatter per call keeps FFmpeg's colour-conversion context between frames
    # (frame.to_ndarray(format=...) rebuilds it per frame: 5-10x slower on small frames).
    rgb = VideoReformatter()
    with _open(path) as container:
        stream = container.streams.video[0]
        declared = int(stream.frames or 0)
        stop = math.inf if max_frames is None else start + max_frames
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i >= stop:
                    break
                if i >= start:  # converting to RGB is the expensive part: only kept frames
                    out.append(rgb.reformat(frame, format="rgb24").to_ndarray())
        except av.FFmpegError as e:
            raise CorruptVideoError(path, f"decoding failed after {start + len(out)} frames: "
                                          f"{e.strerror or e}") from e
    if declared:  # the header said how many frames there are: did we get what it promised?
        wanted = min(declared, stop) - start
        if wanted - len(out) > _TOLERANCE:
            raise CorruptVideoError(path, f"truncated: decoded {start + len(out)} of "
                                          f"{declared} frames")
    if not out:
        if declared and start >= declared - _TOLERANCE:
            raise ValueError(f"start: {start} is past the last frame of {path} "
                             f"({declared} frames)")
        raise CorruptVideoError(path, "no video frames decoded")
    return np.stack(out)


# --------------------------------------------------------------------------- writing
def _as_uint8_frames(frames) -> np.ndarray:
    """uint8 (t, h, w, 3) numpy from numpy/torch uint8 (t, h, w, 3|1) or (t, h, w)."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"frames: expected uint8 (t, h, w, c) in 0..255, got dtype "
                         f"{frames.dtype} (float clips (c, t, h, w) in [-1, 1] convert with "
                         f"viddiff_mini.data.clips.to_uint8_frames)")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3) or frames.shape[0] < 1:
        raise ValueError(f"frames: expected uint8 (t, h, w, 3) with t >= 1, got shape "
                         f"{frames.shape}")
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    return np.ascontiguousarray(frames)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """yuv420p stores colour at half resolution, so the encoders need even sizes:
    repeat the last row / column when a side is odd."""
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return frames


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
        return True
    except Exception:  # noqa: BLE001 - PyAV raises different types across versions
        return False


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """GIF through Pillow: a palette per frame looks better than FFmpeg's fixed rgb8."""
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    with open(path, "wb") as f:
        imgs[0].save(f, format="GIF", save_all=True, append_images=imgs[1:],
                     duration=max(20, int(round(1000 / fps))), loop=0, optimize=False)


def write_video(path: str | os.PathLike, frames, fps: float = 25, codec: str | None = None,
                quality: int | None = None) -> Path:
    """Write uint8 frames ``(t, h, w, 3)`` (numpy or torch) to ``path``; returns the path.

    The container follows the suffix: ``.avi`` (codec ``"mpeg4"``, tagged XVID like
    UCF-101), ``.mp4`` / ``.mov`` / ``.mkv`` (``"libx264"``, or ``"mpeg4"`` when FFmpeg
    lacks it), ``.webm`` (``"libvpx"``), ``.gif`` (Pillow). ``quality``: the codec's fixed
    quantiser (mpeg4 ``qscale`` 1..31, default 2) or x264 ``crf`` (0..51, default 18);
    lower is better. Odd sizes are padded to even by repeating the edge (yuv420p).
    The file is written to a temporary name and renamed: an interrupted write never leaves
    a half file behind.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    frames = _as_uint8_frames(frames)
    if not (isinstance(fps, (int, float, Fraction)) and fps > 0):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    if suffix != ".gif" and suffix not in _CONTAINERS:
        raise ValueError(f"{path}: unknown video suffix {suffix!r}; expected one of "
                         f"{', '.join(VIDEO_EXTENSIONS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(fd)
    try:
        if suffix == ".gif":
            _write_gif(Path(tmp), frames, float(fps))
        else:
            _encode(Path(tmp), suffix, _pad_even(frames), fps, codec, quality)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _encode(path: Path, suffix: str, frames: np.ndarray, fps: float, codec: str | None,
            quality: int | None) -> None:
    fmt, default = _CONTAINERS[suffix]
    codec = codec or default
    if codec == "libx264" and not _has_encoder("libx264"):
        codec = "mpeg4"
    if codec == "xvid":  # the name people know; FFmpeg's native encoder + the XVID tag
        codec = "mpeg4"
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.codec_context.qscale = 2 if quality is None else int(quality)
            if suffix == ".avi":
                stream.codec_context.codec_tag = "XVID"  # what UCF-101's players expect
        elif codec == "libx264":
            stream.codec_context.options = {"crf": str(18 if quality is None else quality),
                                            "preset": "veryfast"}
        yuv = VideoReformatter()  # one conversion context for all frames (see read_video)
        for f in frames:
            frame = yuv.reformat(av.VideoFrame.from_ndarray(f, format="rgb24"), format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)
