"""Reference solutions for lesson 11.3 (control and applications). Same functions as
``lessons/exercises/ex11_3.py``, solved. Instructor only: never in the student handout.
"""

from __future__ import annotations

import math
import re

import torch

# Directions in image coordinates: x grows to the right, y grows DOWNWARD.
DIRECTION_WORDS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0),
                   "down": (0.0, 1.0), "falls": (0.0, 1.0), "rises": (0.0, -1.0)}
ORDER_WORDS = ("then", "next", "finally", "later", "afterwards", "after")


def _words(caption: str) -> list[str]:
    return re.findall(r"[a-z]+", caption.lower())


# =========================================================================== Exercise 11.3.1a
def temporal_text_encoding(caption: str, vocab: dict[str, int], word_emb: torch.Tensor,
                           event_emb: torch.Tensor) -> dict:
    """Temporal-aware token features of one caption: word + position + event embeddings.

    Args:
        caption: a string; its words are the lower-case runs of letters ``[a-z]+``
            (punctuation and digits separate words).
        vocab: word -> row of ``word_emb``; must contain ``"<unk>"``, the row used for any
            word not in it.
        word_emb: ``(V, d)`` word embeddings, ``d`` even.
        event_emb: ``(E, d)`` event (segment) embeddings.

    The event index of a word starts at 0 and increases by one at every ordering word in
    ``ORDER_WORDS`` ("then", "next", "finally", "later", "afterwards", "after") that is not
    the first word; the ordering word itself belongs to the new event. Indices above
    ``E - 1`` are clamped to ``E - 1``. The position embedding of word ``p`` is the
    sin-cos table ``pe[p, 2i] = sin(p / 10000^(2i/d))``, ``pe[p, 2i+1] = cos(p / 10000^(2i/d))``.

    Returns:
        ``{"tokens": (n, d) word_emb[id] + pe[pos] + event_emb[event], "ids": (n,) long,
        "events": (n,) long}`` for the n words.

    Raises:
        ValueError: a caption without words, ``vocab`` without ``"<unk>"``, odd ``d``.
    """
    words = _words(caption)
    if not words:
        raise ValueError(f"caption: no words in {caption!r}; a text condition needs at least "
                         f"one word")
    if "<unk>" not in vocab:
        raise ValueError("vocab: must contain '<unk>' for words outside the vocabulary")
    n, d = len(words), word_emb.shape[1]
    if d % 2:
        raise ValueError(f"word_emb: the sin-cos position table needs an even width, got {d}")
    ids = torch.tensor([vocab.get(w, vocab["<unk>"]) for w in words], dtype=torch.long)
    # event index: how many ordering words (not at position 0) we have seen so far
    events, e = [], 0
    for i, w in enumerate(words):
        if i > 0 and w in ORDER_WORDS:
            e += 1
        events.append(min(e, event_emb.shape[0] - 1))
    events = torch.tensor(events, dtype=torch.long)
    # sin-cos positions: even columns sin, odd columns cos, frequencies 10000^(-2i/d)
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    tokens = word_emb[ids] + pe.to(word_emb) + event_emb[events]
    return {"tokens": tokens, "ids": ids, "events": events}


# =========================================================================== Exercise 11.3.1b
def span_prior(words: list[str], spans, frames: int) -> torch.Tensor:
    """Which frames each word may attend to, from ground-truth action spans.

    Args:
        words: the caption's words (a list of str), n of them.
        spans: ``[(action_word, first, last), ...]`` inclusive frame spans; the k-th span
            belongs to the k-th occurrence of its word, matched left to right.
        frames: number of frames t.

    Returns:
        ``(t, n)`` bool: an action word's column is True exactly on its span; every other
        word's column is True on all frames.

    Raises:
        ValueError: an action word that is not in ``words``, or a span outside
        ``0 <= first <= last < frames``.
    """
    prior = torch.ones(frames, len(words), dtype=torch.bool)
    start = 0
    for word, first, last in spans:
        # the next occurrence of this word after the previous span's word
        pos = next((i for i in range(start, len(words)) if words[i] == word), None)
        if pos is None:
            raise ValueError(f"spans: action word {word!r} is not in the caption {words}")
        if not 0 <= first <= last < frames:
            raise ValueError(f"spans: span ({first}, {last}) of {word!r} is outside frames "
                             f"0..{frames - 1}")
        prior[:, pos] = False
        prior[first:last + 1, pos] = True
        start = pos + 1
    return prior


def alignment_loss(scores: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """Action-word alignment loss.

    Args:
        scores: ``(b, t, n)`` per-frame attention logits of each token.
        prior: ``(b, t, n)`` bool (see :func:`span_prior`).

    For each token, ``p = softmax(scores over the t frames)``; its in-span mass is
    ``sum_t p * prior``. Action tokens are the columns whose prior is True on some frames
    but not on all. Loss = mean over action tokens of ``-log(in-span mass)`` (a scalar,
    differentiable); 0 (still a tensor) when there is no action token.
    """
    if scores.shape != prior.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and prior {tuple(prior.shape)} must "
                         f"both be (b, t, n)")
    p = scores.softmax(dim=1)                        # distribution over frames per token
    mass = (p * prior).sum(dim=1)                    # (b, n)
    action = prior.any(dim=1) & ~prior.all(dim=1)    # span shorter than the clip
    if not action.any():
        return scores.sum() * 0.0
    return -mass[action].clamp_min(1e-8).log().mean()


# =========================================================================== Exercise 11.3.1c
def _default_palette() -> dict:
    from viddiff_mini.control.text import COLORS
    from viddiff_mini.data.synthetic_motion import COLOURS
    return {name: COLORS[name] for name in COLOURS}


def text_video_consistency(video: torch.Tensor, masks: torch.Tensor, caption: str,
                           palette: dict | None = None) -> dict:
    """Check a clip against its caption with ground-truth masks: colour and event order.

    Args:
        video: ``(3, t, h, w)`` in [-1, 1].
        masks: ``(k, t, h, w)`` bool, one per object.
        caption: e.g. ``"a red ball moves right then falls"``.
        palette: colour name -> RGB in [-1, 1]; default: MovingShapes-101's nine object
            colours, ``{n: viddiff_mini.control.text.COLORS[n] for n in
            viddiff_mini.data.synthetic_motion.COLOURS}``.

    Colour: each object's colour is the palette entry nearest (Euclidean) to the per-channel
    median of its masked pixels over the clip; ``color_ok`` = the caption's first colour word
    (a word that is a palette name) is among the objects' colours (None without one).

    Order: split the words into events at ORDER_WORDS (as in 11.3.1a); an event's direction
    is its last word in ``DIRECTION_WORDS`` (events without one are skipped). The subject is
    the object whose centroid travels farthest. Its step velocities ``v_f = c_{f+1} - c_f``
    (f = 0..t-2) projected on a direction, negatives set to 0, weight the step indices f;
    the weighted mean is the event's time (NaN if it never moves that way). ``order_ok`` =
    the times strictly increase in caption order (False if any is NaN); None with fewer than
    two directional events.

    Returns ``{"colors": [name per object], "color_ok": bool | None, "times": [float],
    "order_ok": bool | None}``.
    """
    palette = palette or _default_palette()
    names = list(palette)
    table = torch.tensor([palette[n] for n in names], dtype=torch.float32)   # (P, 3)
    colors, tracks = [], []
    ys, xs = torch.meshgrid(torch.arange(video.shape[2], dtype=torch.float32),
                            torch.arange(video.shape[3], dtype=torch.float32), indexing="ij")
    for m in masks.bool():
        px = video.permute(1, 2, 3, 0)[m]                                 # (pixels, 3)
        colors.append(names[int((table - px.median(0).values).norm(dim=1).argmin())]
                      if len(px) else None)
        area = m.float().sum((1, 2))                                      # (t,)
        c = torch.stack([(m * xs).sum((1, 2)), (m * ys).sum((1, 2))], -1) / area[:, None]
        tracks.append(c)                                                  # NaN if empty
    words = _words(caption)
    wanted = [w for w in words if w in palette]
    color_ok = (wanted[0] in colors) if wanted else None
    # events and their directions
    directions, current = [], None
    for i, w in enumerate(words):
        if i > 0 and w in ORDER_WORDS:
            if current is not None:
                directions.append(current)
            current = None
        if w in DIRECTION_WORDS:
            current = DIRECTION_WORDS[w]
    if current is not None:
        directions.append(current)
    # the subject: the object that travels farthest
    travel = [torch.nan_to_num((c[1:] - c[:-1]).norm(dim=-1)).sum() for c in tracks]
    track = tracks[int(torch.stack(travel).argmax())]
    vel = torch.nan_to_num(track[1:] - track[:-1])                        # (t-1, 2)
    steps = torch.arange(len(vel), dtype=torch.float32)
    times = []
    for d in directions:
        w = (vel * torch.tensor(d)).sum(-1).clamp_min(0)
        times.append(float((w * steps).sum() / w.sum()) if w.sum() > 0 else float("nan"))
    order_ok = None if len(times) < 2 else all(a < b for a, b in zip(times, times[1:]))
    return {"colors": colors, "color_ok": color_ok, "times": times, "order_ok": order_ok}


# =========================================================================== Exercise 11.3.2a
def bezier(points, frames: int, order: int | None = None) -> torch.Tensor:
    """A Bezier curve of any order, sampled at ``frames`` evenly spaced parameters.

    Args:
        points: ``(n + 1, 2)`` control points (x, y); the curve has order n >= 1.
        frames: number of samples; parameter ``s_f = f / (frames - 1)`` (0 when frames = 1).
        order: optional expected order; ``len(points) != order + 1`` is a ValueError.

    Returns:
        ``(frames, 2)``: ``B(s) = sum_i C(n, i) s^i (1 - s)^(n - i) p_i`` (compute it with
        de Casteljau's repeated linear interpolation or with the Bernstein form).

    Raises:
        ValueError: fewer than 2 points, a wrong number of points for ``order``, points
        not of shape ``(m, 2)``, ``frames < 1``.
    """
    p = torch.as_tensor(points, dtype=torch.float32)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"points: expected (n + 1, 2) control points, got {tuple(p.shape)}")
    if p.shape[0] < 2:
        raise ValueError(f"points: a Bezier curve needs at least 2 control points, got "
                         f"{p.shape[0]}")
    if order is not None and p.shape[0] != order + 1:
        raise ValueError(f"points: a curve of order {order} needs {order + 1} control points, "
                         f"got {p.shape[0]}")
    if frames < 1:
        raise ValueError(f"frames: expected >= 1, got {frames}")
    s = torch.linspace(0, 1, frames) if frames > 1 else torch.zeros(1)
    s = s[:, None, None]                                   # (t, 1, 1)
    pts = p[None].expand(len(s), -1, -1)                   # (t, n+1, 2)
    # de Casteljau: interpolate neighbours until one point is left
    while pts.shape[1] > 1:
        pts = (1 - s) * pts[:, :-1] + s * pts[:, 1:]
    return pts[:, 0]


# =========================================================================== Exercise 11.3.2b
def trajectory_heatmaps(trajs, size, sigma: float = 2.0) -> torch.Tensor:
    """Independent per-object trajectories -> Gaussian heatmaps for ``cond["concat"]``.

    Args:
        trajs: ``(k, t, 2)`` pixel centres (x, y), or a list of k ``(t, 2)`` tensors (all with
            the same t); NaN = the object is absent at that frame.
        size: ``h`` (square) or ``(h, w)``.
        sigma: Gaussian width in pixels (> 0).

    Returns:
        ``(k, t, h, w)``: ``exp(-((x - cx)^2 + (y - cy)^2) / (2 sigma^2))`` at pixel (x, y)
        (pixel j's centre is coordinate j); all zeros where the object is absent.

    Raises:
        ValueError: trajectories with different numbers of frames, a bad shape, sigma <= 0.
    """
    if isinstance(trajs, (list, tuple)):
        trajs = [torch.as_tensor(x, dtype=torch.float32) for x in trajs]
        if len({x.shape for x in trajs}) > 1:
            raise ValueError(f"trajs: every object needs the same number of frames, got "
                             f"shapes {[tuple(x.shape) for x in trajs]}")
        trajs = torch.stack(trajs)
    x = torch.as_tensor(trajs, dtype=torch.float32)
    if x.ndim != 3 or x.shape[-1] != 2:
        raise ValueError(f"trajs: expected (k, t, 2), got {tuple(x.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma: expected > 0, got {sigma}")
    h, w = (size, size) if isinstance(size, int) else size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    cx, cy = x[..., 0, None, None], x[..., 1, None, None]         # (k, t, 1, 1)
    g = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return torch.nan_to_num(g, nan=0.0)                           # absent -> zeros


# =========================================================================== Exercise 11.3.2c
def trajectory_conflicts(trajs, size, z=None, radius: float = 4.0,
                         max_speed: float | None = None) -> dict:
    """Check a multi-object trajectory request for occlusions and impossible motion.

    Args:
        trajs: ``(k, t, 2)`` pixel centres (NaN = absent).
        size: ``h`` or ``(h, w)``; a point must satisfy ``0 <= x <= w-1``, ``0 <= y <= h-1``.
        z: depth per object (larger = nearer the camera, drawn on top); default ``0..k-1``.
        radius: object radius in px: two objects overlap at a frame when their centres are
            closer than ``2 * radius``.
        max_speed: optional limit in px/frame on the distance between consecutive frames.

    Returns:
        ``{"feasible": bool, "occluded": (k, t) bool, "crossings": [(i, j, frame, front)],
        "issues": [str]}``: for every pair i < j and frame where they overlap, a crossing
        with ``front`` the object with the larger z (ties: the larger index), and the other
        one marked occluded at that frame. A step faster than ``max_speed`` makes the
        request infeasible and adds an issue naming the object and the frames.

    Raises:
        ValueError: a point outside the frame; the message names the object and the frame.
    """
    x = torch.as_tensor(trajs, dtype=torch.float32)
    if x.ndim != 3 or x.shape[-1] != 2:
        raise ValueError(f"trajs: expected (k, t, 2), got {tuple(x.shape)}")
    k, t, _ = x.shape
    h, w = (size, size) if isinstance(size, int) else size
    zz = torch.arange(k, dtype=torch.float32) if z is None else torch.as_tensor(z, dtype=torch.float32)
    valid = torch.isfinite(x).all(-1)                                # (k, t)
    for i in range(k):
        for f in range(t):
            if valid[i, f]:
                px, py = float(x[i, f, 0]), float(x[i, f, 1])
                if not (0 <= px <= w - 1 and 0 <= py <= h - 1):
                    raise ValueError(f"trajs: object {i} at frame {f} is at ({px:.1f}, "
                                     f"{py:.1f}), outside the {w}x{h} frame")
    out = {"feasible": True, "occluded": torch.zeros(k, t, dtype=torch.bool),
           "crossings": [], "issues": []}
    # impossible speeds
    if max_speed is not None and t > 1:
        step = torch.nan_to_num((x[:, 1:] - x[:, :-1]).norm(dim=-1), nan=0.0)   # (k, t-1)
        for i in range(k):
            fast = (step[i] > max_speed).nonzero().flatten().tolist()
            if fast:
                out["feasible"] = False
                out["issues"].append(f"object {i} moves {float(step[i].max()):.1f} px/frame "
                                     f"(frames {fast[0]}->{fast[0] + 1}), above max_speed="
                                     f"{max_speed}")
    # overlaps: the nearer object (larger z) hides the other one
    for i in range(k):
        for j in range(i + 1, k):
            close = ((x[i] - x[j]).norm(dim=-1) < 2 * radius) & valid[i] & valid[j]
            front, back = (i, j) if zz[i] > zz[j] else (j, i)
            for f in close.nonzero().flatten().tolist():
                out["crossings"].append((i, j, f, front))
                out["occluded"][back, f] = True
    return out


# =========================================================================== Exercise 11.3.3a
def drag_warp(video: torch.Tensor, start, target, radius: float) -> torch.Tensor:
    """Model-free drag: move the content around ``start`` to ``target`` over the clip.

    Args:
        video: ``(b, 3, t, h, w)`` source clip.
        start, target: ``(x, y)`` pixel positions inside the frame.
        radius: radius of the dragged disc in pixels.

    At frame f the dragged point is at ``p_f = start + (f / (t - 1)) (target - start)``.
    Every pixel q with ``|q - p_f| <= radius`` takes the value of frame 0 at
    ``q - p_f + start`` (bilinear sampling, border padding); every other pixel keeps the
    source value exactly.

    Returns:
        ``(b, 3, t, h, w)``.

    Raises:
        ValueError: ``start`` or ``target`` outside the frame.
    """
    import torch.nn.functional as F

    b, c, t, h, w = video.shape
    a = torch.as_tensor(start, dtype=torch.float32)
    z = torch.as_tensor(target, dtype=torch.float32)
    for name, p in (("start", a), ("target", z)):
        if not (0 <= float(p[0]) <= w - 1 and 0 <= float(p[1]) <= h - 1):
            raise ValueError(f"{name}: {p.tolist()} is outside the {w}x{h} frame")
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    out = video.clone()
    for f in range(t):
        p = a + (f / max(t - 1, 1)) * (z - a)
        sx, sy = xx - p[0] + a[0], yy - p[1] + a[1]          # where to read in frame 0
        grid = torch.stack([sx / max(w - 1, 1) * 2 - 1, sy / max(h - 1, 1) * 2 - 1], -1)
        moved = F.grid_sample(video[:, :, 0], grid[None].expand(b, h, w, 2), mode="bilinear",
                              padding_mode="border", align_corners=True)
        disc = (xx - p[0]) ** 2 + (yy - p[1]) ** 2 <= radius**2
        out[:, :, f] = torch.where(disc, moved, video[:, :, f])
    return out


# =========================================================================== Exercise 11.3.3b
def local_motion_mask(paths, size, radius: float, per_frame: bool = False) -> torch.Tensor:
    """The region a drag may change: discs around every dragged point.

    Args:
        paths: ``(m, t, 2)`` (or ``(t, 2)`` for one point) pixel positions of the dragged
            points over the clip.
        size: ``h`` or ``(h, w)``.
        radius: disc radius in pixels (a pixel q is inside when ``|q - p| <= radius``).
        per_frame: False -> one ``(h, w)`` mask, the union over all points and frames;
            True -> ``(t, h, w)``: at frame f the discs at the points' frame-f positions
            plus the discs at their frame-0 positions (so the vacated area can change too).

    Raises:
        ValueError: ``paths`` not of shape ``(m, t, 2)`` / ``(t, 2)``, radius < 0.
    """
    p = torch.as_tensor(paths, dtype=torch.float32)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"paths: expected (m, t, 2) or (t, 2), got {tuple(p.shape)}")
    if radius < 0:
        raise ValueError(f"radius: expected >= 0, got {radius}")
    h, w = (size, size) if isinstance(size, int) else size
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32),
                            torch.arange(w, dtype=torch.float32), indexing="ij")
    d2 = (xx - p[..., 0, None, None]) ** 2 + (yy - p[..., 1, None, None]) ** 2   # (m, t, h, w)
    discs = (d2 <= radius**2).any(0)                                                # (t, h, w)
    if per_frame:
        return discs | discs[:1]
    return discs.any(0)


# =========================================================================== Exercise 11.3.3c
def _mask_for(mask, video: torch.Tensor) -> torch.Tensor:
    """A region mask as bool ``(b, 1, t, h, w)`` for ``video (b, c, t, h, w)``."""
    m = torch.as_tensor(mask).bool()
    b, _, t, h, w = video.shape
    if m.ndim == 2 and m.shape == (h, w):
        return m[None, None, None].expand(b, 1, t, h, w)
    if m.ndim == 3 and m.shape == (t, h, w):
        return m[None, None].expand(b, 1, t, h, w)
    raise ValueError(f"mask: expected (h, w) = ({h}, {w}) or (t, h, w) = ({t}, {h}, {w}), "
                     f"got {tuple(m.shape)}")


def masked_blend_hook(source: torch.Tensor, mask):
    """An ``x0_hook`` for ``Diffusion.sample`` that keeps the unedited region stable.

    Args:
        source: ``(b, 3, t, h, w)`` the clip being edited.
        mask: the editable region, ``(h, w)`` or ``(t, h, w)`` bool (True = may change).

    Returns:
        ``hook(x0, t) -> x0`` with ``x0`` ``(b, 3, t, h, w)``: the predicted clean clip
        inside the mask, the source *exactly* outside it (copy, do not interpolate).

    Raises:
        ValueError: (when building the hook) a mask whose size does not match the source.
    """
    m = _mask_for(mask, source)

    def hook(x0: torch.Tensor, t) -> torch.Tensor:
        # start from the source and paste the prediction into the editable region: the
        # pixels outside the mask are the source's, bit for bit, at every step
        kept = source.to(device=x0.device, dtype=x0.dtype).clone()
        editable = m.to(x0.device).expand_as(x0)
        kept[editable] = x0[editable]
        return kept

    return hook


def masked_psnr(video: torch.Tensor, source: torch.Tensor, edit_mask) -> float:
    """PSNR in dB of the unedited region: pixels *outside* ``edit_mask``.

    video, source: ``(b, 3, t, h, w)`` in [-1, 1] (data range 2); edit_mask: ``(h, w)`` or
    ``(t, h, w)``. ``PSNR = 10 log10(2^2 / MSE)`` over the unedited pixels (all channels);
    ``inf`` when they are identical. Raises ValueError when nothing is left unedited or a
    shape does not match.
    """
    if video.shape != source.shape:
        raise ValueError(f"video {tuple(video.shape)} and source {tuple(source.shape)} differ")
    keep = ~_mask_for(edit_mask, source)
    if not keep.any():
        raise ValueError("edit_mask: covers every pixel; nothing is left to compare")
    err = ((video - source) ** 2)[keep.expand_as(video)]
    mse = float(err.mean())
    return math.inf if mse == 0 else 10 * math.log10(4.0 / mse)


# =========================================================================== Exercise 11.3.4a
def multimodal_cond(caption: str | None, trajectory, reference: torch.Tensor | None,
                    frames: int, size: int, encoder, text_dim: int = 64,
                    sigma: float = 1.5) -> dict:
    """Text + trajectory + reference video -> one condition dict (batch of one).

    Args:
        caption: a caption or None. encoder: ``encoder(caption) -> (tokens (1, n, text_dim),
            mask (1, n) bool)``.
        trajectory: ``(k, t, 2)`` pixel paths with k <= 2 objects (``t == frames``), or None.
        reference: a reference video ``(3, t', h, w)`` in [-1, 1] with ``h = w = size``, or
            None: its first frame is the image to animate, its look the style.
        frames, size: the clip to generate is ``(frames, size, size)``.

    Returns the dict (every control optional; keep masks are ``(1,)`` bool):

    * ``context (1, n, text_dim)``, ``context_mask (1, n)``, ``context_keep`` = caption given
      (no caption: ``n = 1``, a zero token, mask and keep False);
    * ``concat (1, 6, frames, size, size)``: channels 0-1 = Gaussian heatmaps (``sigma``) of
      objects 0 and 1 (zeros for a missing object or no trajectory), channels 2-4 = the
      reference's first frame on every frame (as ``control.animate.first_frame_maps``
      builds it), channel 5 = 1 on frame 0 when a reference is given; ``concat_keep`` = trajectory OR reference given (the keep bits of
      the two controls sharing this input combine with OR);
    * ``vector (1, STYLE_DIM + 1)``: the reference's style code
      (``viddiff_mini.control.style.style_code``) then a presence flag 1; zeros without a
      reference; ``vector_keep`` = reference given.

    Raises:
        ValueError: more than 2 objects, a trajectory with the wrong number of frames, a
        reference of the wrong size.
    """
    from viddiff_mini.control.animate import first_frame_maps
    from viddiff_mini.control.style import STYLE_DIM, style_code
    from viddiff_mini.control.trajectory import trajectory_heatmaps as heatmaps

    cond = {}
    # text -> cross-attention tokens
    if caption is not None:
        tok, mask = encoder(caption)
        cond.update(context=tok, context_mask=mask.bool(),
                    context_keep=torch.ones(1, dtype=torch.bool))
    else:
        cond.update(context=torch.zeros(1, 1, text_dim),
                    context_mask=torch.zeros(1, 1, dtype=torch.bool),
                    context_keep=torch.zeros(1, dtype=torch.bool))
    # trajectory heatmaps and the first frame share the concat input
    concat = torch.zeros(1, 6, frames, size, size)
    if trajectory is not None:
        tr = torch.as_tensor(trajectory, dtype=torch.float32)
        if tr.ndim == 2:
            tr = tr[None]
        if tr.ndim != 3 or tr.shape[0] > 2 or tr.shape[1] != frames:
            raise ValueError(f"trajectory: expected (k <= 2, {frames}, 2), got {tuple(tr.shape)}")
        concat[0, : tr.shape[0]] = heatmaps(tr, size, sigma)
    if reference is not None:
        if reference.ndim != 4 or reference.shape[0] != 3 or reference.shape[-2:] != (size, size):
            raise ValueError(f"reference: expected (3, t, {size}, {size}), got "
                             f"{tuple(reference.shape)}")
        concat[:, 2:6] = first_frame_maps(reference[:, 0][None], frames)
    cond["concat"] = concat
    cond["concat_keep"] = torch.tensor([trajectory is not None or reference is not None])
    # the reference's style -> the vector input (with a presence flag)
    vector = torch.zeros(1, STYLE_DIM + 1)
    if reference is not None:
        vector[0, :STYLE_DIM] = style_code(reference[None].float())[0]
        vector[0, STYLE_DIM] = 1.0
    cond["vector"] = vector
    cond["vector_keep"] = torch.tensor([reference is not None])
    return cond


# =========================================================================== Exercise 11.3.4b
def fused_guidance(model, x_t: torch.Tensor, t: torch.Tensor, conds: dict, null_cond: dict,
                   weights: dict) -> torch.Tensor:
    """Fuse several controls by a weighted sum of their guidance terms.

    Args:
        model: ``model(x_t, t, cond) -> prediction`` shaped like ``x_t``.
        x_t: ``(b, c, t, h, w)``; t: ``(b,)``.
        conds: ``{name: cond}`` where each cond keeps only control ``name``.
        null_cond: the cond with every control dropped.
        weights: ``{name: w}`` guidance scale per control (names must be in ``conds``).

    Returns:
        ``f(null) + sum_k w_k (f(cond_k) - f(null))``. The model is called once for the null
        cond and once per control with a non-zero weight (a zero weight costs nothing).

    Raises:
        ValueError: a weight for a control that is not in ``conds``.
    """
    unknown = sorted(set(weights) - set(conds))
    if unknown:
        raise ValueError(f"weights: control(s) {unknown} have no cond; conds has {sorted(conds)}")
    f_null = model(x_t, t, null_cond)
    out = f_null
    for name, w in weights.items():
        if w == 0:
            continue                                  # no term, no model call
        out = out + w * (model(x_t, t, conds[name]) - f_null)
    return out


# =========================================================================== Exercise 11.3.4c
def _axis_direction(dx: float, dy: float) -> str:
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def resolve_direction_conflict(caption: str, trajectory, weights: dict,
                               policy: str = "priority", down_weight: float = 0.25,
                               tol: float = 2.0) -> tuple[dict, dict]:
    """Detect and resolve a caption whose direction disagrees with the trajectory.

    Args:
        caption: e.g. ``"a red ball moves left"``. Its direction is its LAST word among
            "left", "right", "up", "down" (None without one).
        trajectory: ``(t, 2)`` or ``(k, t, 2)`` (object 0 is used). Its direction is that of
            the net displacement (last - first point) along the dominant axis ("right" /
            "left" for |dx| >= |dy|, else "down" / "up"; image y grows downward), None when
            the displacement is shorter than ``tol`` px.
        weights: guidance weights ``{control: w}`` (e.g. ``{"text": 3, "trajectory": 2}``);
            not modified.
        policy: ``"priority"`` -- the trajectory (more specific) wins: text weight 0;
            ``"weights"`` -- the text weight is multiplied by ``down_weight``;
            ``"error"`` -- raise ValueError naming both directions.

    Returns:
        ``(new_weights, report)`` with report ``{"conflict": bool, "caption_direction":
        str | None, "trajectory_direction": str | None, "action": str}``. No conflict (same
        direction or one is None): the weights unchanged and action ``"none"``.

    Raises:
        ValueError: an unknown policy, or a conflict under ``"error"``.
    """
    if policy not in ("priority", "weights", "error"):
        raise ValueError(f"policy: expected 'priority', 'weights' or 'error', got {policy!r}")
    words = [w for w in _words(caption) if w in ("left", "right", "up", "down")]
    said = words[-1] if words else None
    tr = torch.as_tensor(trajectory, dtype=torch.float32)
    if tr.ndim == 3:
        tr = tr[0]
    disp = tr[-1] - tr[0]
    went = _axis_direction(float(disp[0]), float(disp[1])) if float(disp.norm()) >= tol else None
    out = dict(weights)
    report = {"conflict": False, "caption_direction": said, "trajectory_direction": went,
              "action": "none"}
    if said is None or went is None or said == went:
        return out, report
    report["conflict"] = True
    if policy == "error":
        raise ValueError(f"conflicting controls: the caption says {said!r} but the trajectory "
                         f"goes {went!r}")
    if policy == "priority":
        out["text"] = 0.0
        report["action"] = "text dropped (trajectory has priority)"
    else:
        out["text"] = out.get("text", 1.0) * down_weight
        report["action"] = f"text weight x{down_weight}"
    return out, report
