"""Visual helpers for notebooks: clip grids, inline animated GIFs, filmstrips, trajectories.

Videos follow the package convention ``(b, c, t, h, w)`` float in [-1, 1]. A single clip
``(c, t, h, w)`` is accepted wherever a batch is, and 1-channel clips are shown in grey.

``animate`` returns an ``IPython.display.HTML`` holding one ``<img>`` whose source is a
base64 GIF: small, needs no JavaScript, and survives ``nbval`` and static notebook viewers.
"""

from __future__ import annotations

import base64
import io
import math
import os
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from viddiff_mini.utils import check_video

__all__ = ["video_grid", "animate", "save_gif", "gif_bytes", "show_frames",
           "plot_trajectories", "flow_to_rgb", "to_uint8"]


# --------------------------------------------------------------------------- conversions
def _as_batch(videos, name: str = "videos") -> torch.Tensor:
    """Accept (b, c, t, h, w) or one clip (c, t, h, w); return float (b, c, t, h, w) on CPU."""
    if isinstance(videos, np.ndarray):
        videos = torch.from_numpy(videos)
    if isinstance(videos, torch.Tensor) and videos.ndim == 4:
        videos = videos[None]
    check_video(videos, name)
    return videos.detach().float().cpu()


def to_uint8(videos: torch.Tensor) -> torch.Tensor:
    """(b, c, t, h, w) in [-1, 1] -> uint8 (b, t, h, w, 3); 1 channel is repeated to grey."""
    v = _as_batch(videos)
    if v.shape[1] == 1:
        v = v.repeat(1, 3, 1, 1, 1)
    elif v.shape[1] != 3:
        raise ValueError(f"videos: expected 1 or 3 channels in dim 1 of (b, c, t, h, w), "
                         f"got shape {tuple(v.shape)}")
    v = ((v.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(v, "b c t h w -> b t h w c")


def video_grid(videos, nrow: int | None = None, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tile a batch of clips into one clip.

    videos: (b, c, t, h, w) float in [-1, 1] (or one clip (c, t, h, w)).
    nrow: clips per row (default: ceil(sqrt(b))). Returns uint8 numpy (t, H, W, 3) with
    ``pad`` pixels of ``pad_value`` between tiles; empty tiles stay ``pad_value``.
    """
    frames = to_uint8(videos)  # (b, t, h, w, 3)
    b, t, h, w, _ = frames.shape
    nrow = max(1, min(b, nrow or math.ceil(math.sqrt(b))))
    ncol_rows = math.ceil(b / nrow)
    H = ncol_rows * h + (ncol_rows + 1) * pad
    W = nrow * w + (nrow + 1) * pad
    grid = np.full((t, H, W, 3), pad_value, dtype=np.uint8)
    f = frames.numpy()
    for i in range(b):
        r, c = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[:, y:y + h, x:x + w] = f[i]
    return grid


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of uint8 (t, H, W, 3) by an integer factor (crisp pixels)."""
    if scale <= 1:
        return frames
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


# --------------------------------------------------------------------------- GIF encoding
def _encode_gif_pil(frames: np.ndarray, fps: float) -> bytes:
    """Minimal GIF encoder through Pillow (always installed with matplotlib)."""
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:],
                 duration=max(20, int(round(1000 / fps))), loop=0, optimize=False)
    return buf.getvalue()


def gif_bytes(frames: np.ndarray, fps: float = 8) -> bytes:
    """Encode uint8 (t, H, W, 3) frames as an animated, looping GIF and return its bytes."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected uint8 (t, H, W, 3), got shape {frames.shape}")
    return _encode_gif_pil(frames, fps)


def save_gif(videos, path: str | os.PathLike, fps: float = 8, nrow: int | None = None,
             scale: int = 1) -> Path:
    """Write a batch of clips (b, c, t, h, w) in [-1, 1] as one tiled, looping GIF at ``path``.

    Uses ``viddiff_mini.data.video_io.write_video`` when the data package provides it
    (one GIF writer for the package), else a small Pillow encoder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = _upscale(video_grid(videos, nrow), scale)
    try:
        from viddiff_mini.data.video_io import write_video
    except ImportError:
        write_video = None
    if write_video is not None:
        try:
            write_video(path, frames, fps=fps)
            return path
        except Exception:  # noqa: BLE001 - any writer trouble: fall back to the simple encoder
            pass
    path.write_bytes(gif_bytes(frames, fps))
    return path


def animate(videos, fps: float = 8, nrow: int | None = None, scale: int = 2):
    """Show clips as an inline animated GIF in a notebook.

    videos: (b, c, t, h, w) float in [-1, 1] (or one clip). Returns ``IPython.display.HTML``
    with a base64 ``<img>`` (a few tens of kB for a 16x64x64 grid); outside IPython an
    object with the same ``data`` attribute and ``_repr_html_`` is returned.
    """
    frames = _upscale(video_grid(videos, nrow), scale)
    data = gif_bytes(frames, fps)
    html = (f'<img src="data:image/gif;base64,{base64.b64encode(data).decode("ascii")}" '
            f'style="image-rendering: pixelated" />')
    try:
        from IPython.display import HTML
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        class HTML:  # type: ignore[no-redef]
            def __init__(self, data):
                self.data = data

            def _repr_html_(self):
                return self.data
    return HTML(html)


# --------------------------------------------------------------------------- matplotlib
def show_frames(video, ax=None, max_frames: int = 16, title: str | None = None):
    """Filmstrip of one clip: frames side by side in one axis.

    video: (c, t, h, w) or (1, c, t, h, w) in [-1, 1] (from a batch, the first clip is
    shown). Shows at most ``max_frames`` evenly spaced frames. Returns the axis.
    """
    import matplotlib.pyplot as plt

    v = _as_batch(video, "video")[:1]
    t = v.shape[2]
    idx = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    strip = video_grid(rearrange(v[:, :, idx], "1 c t h w -> t c 1 h w"), nrow=len(idx))[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(min(16, 1.2 * len(idx)), 1.6))
    ax.imshow(strip)
    ax.set_xticks([(i + 0.5) * (strip.shape[1] / len(idx)) for i in range(len(idx))])
    ax.set_xticklabels([str(i) for i in idx], fontsize=7)
    ax.set_yticks([])
    ax.set_xlabel("frame")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_trajectories(trajectories, ax=None, size: int | None = None, labels=None,
                      background=None, title: str | None = None):
    """Plot object trajectories in image coordinates.

    trajectories: (k, t, 2) or (t, 2) pixel centres (x, y); NaN points (missing objects)
    are skipped. ``background``: an optional clip (c, t, h, w) whose first frame is drawn
    underneath. ``size``: image side for the axis limits (y grows downwards). Start points
    are circles, end points crosses. Returns the axis.
    """
    import matplotlib.pyplot as plt

    tr = torch.as_tensor(trajectories).detach().float().cpu()
    if tr.ndim == 2:
        tr = tr[None]
    if tr.ndim != 3 or tr.shape[-1] != 2:
        raise ValueError(f"trajectories: expected (k, t, 2) pixel (x, y), got {tuple(tr.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(3, 3))
    if background is not None:
        bg = to_uint8(background)[0, 0].numpy()
        ax.imshow(bg, alpha=0.6)
        size = size or bg.shape[0]
    for i, path in enumerate(tr.numpy()):
        ok = ~np.isnan(path).any(-1)
        if not ok.any():
            continue
        p = path[ok]
        lab = labels[i] if labels is not None else f"object {i}"
        line, = ax.plot(p[:, 0], p[:, 1], "-", marker=".", ms=3, label=lab)
        ax.plot(p[0, 0], p[0, 1], "o", color=line.get_color())
        ax.plot(p[-1, 0], p[-1, 1], "x", color=line.get_color())
    if size:
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
    else:
        ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def flow_to_rgb(flow, max_mag: float | None = None) -> torch.Tensor:
    """Colour-wheel visualisation of optical flow (re-exported from ``analysis.motion``).

    flow: (..., 2, h, w) with (dx, dy) in pixels. Returns float (..., 3, h, w) in [-1, 1]:
    hue = direction, saturation = magnitude / max_mag (default: the largest magnitude).
    """
    from viddiff_mini.analysis.motion import flow_to_rgb as _f

    return _f(flow, max_mag=max_mag)


def save_contact_sheet(videos, path: str | os.PathLike, every: int = 2, scale: int = 2,
                       pad: int = 1) -> None:
    """A PNG with one clip per row and every ``every``-th frame across: a still view of a
    batch of samples (for model cards, reports and GitHub previews).

    videos: (b, c, t, h, w) float in [-1, 1]."""
    from PIL import Image

    frames = to_uint8(videos)[:, ::every].numpy()               # (b, t', h, w, 3)
    b, t, h, w, _ = frames.shape
    sheet = np.full((b * h + (b + 1) * pad, t * w + (t + 1) * pad, 3), 255, dtype=np.uint8)
    for i in range(b):
        for j in range(t):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            sheet[y:y + h, x:x + w] = frames[i, j]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_upscale(sheet[None], scale)[0]).save(path)
