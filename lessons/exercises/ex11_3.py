"""Exercises for lesson 11.3 (control and applications). Fill in each function.

Each function raises ``NotImplementedError("Exercise 11.3.<k><letter>: ...")`` until you
write it. Check your work in a notebook with::

    from viddiff_mini.grading import check
    check("11.3.1a")

or from a terminal with ``pytest tests/exercises -k ex11_3`` (add ``--exercise 11.3.1a``
for one exercise). Video tensors are ``(b, c, t, h, w)``, float, in [-1, 1].

The exercise cells at the end of each notebook re-read this file every time they run (edit,
save, re-run the cell: no kernel restart) and print "implement 11.x.yz to see yours here"
while a function still raises ``NotImplementedError``. Each exercise there has a difficulty,
a time estimate and two folded hints; the student guide is ``lessons/README.md``.

You may use torch, einops and the helpers of ``viddiff_mini`` (e.g.
``viddiff_mini.control.style.style_code``); the point of each exercise is the piece its
docstring describes.
"""

from __future__ import annotations

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
    raise NotImplementedError(
        "Exercise 11.3.1a: word + sin-cos position + event embeddings of a caption's words")


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
    raise NotImplementedError(
        "Exercise 11.3.1b: a (t, n) mask that is True on each action word's frame span")


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
    raise NotImplementedError(
        "Exercise 11.3.1b: mean -log in-span softmax mass of the action words")


# =========================================================================== Exercise 11.3.1c
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
    raise NotImplementedError(
        "Exercise 11.3.1c: check the caption's colour and event order on the masked objects")


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
    raise NotImplementedError(
        "Exercise 11.3.2a: evaluate a Bezier curve of any order (de Casteljau or Bernstein)")


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
    raise NotImplementedError(
        "Exercise 11.3.2b: one Gaussian heatmap per object and frame, zeros where absent")


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
    raise NotImplementedError(
        "Exercise 11.3.2c: find overlaps (depth order decides who is hidden) and too-fast steps")


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
    raise NotImplementedError(
        "Exercise 11.3.3a: move the disc around start to target along the clip, copy the rest")


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
    raise NotImplementedError(
        "Exercise 11.3.3b: discs of radius around the dragged points (union or per frame)")


# =========================================================================== Exercise 11.3.3c
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
    raise NotImplementedError(
        "Exercise 11.3.3c: an x0_hook that copies the source outside the editable mask")


def masked_psnr(video: torch.Tensor, source: torch.Tensor, edit_mask) -> float:
    """PSNR in dB of the unedited region: pixels *outside* ``edit_mask``.

    video, source: ``(b, 3, t, h, w)`` in [-1, 1] (data range 2); edit_mask: ``(h, w)`` or
    ``(t, h, w)``. ``PSNR = 10 log10(2^2 / MSE)`` over the unedited pixels (all channels);
    ``inf`` when they are identical. Raises ValueError when nothing is left unedited or a
    shape does not match.
    """
    raise NotImplementedError(
        "Exercise 11.3.3c: PSNR of the pixels outside the edit mask")


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
    raise NotImplementedError(
        "Exercise 11.3.4a: assemble context, concat and vector inputs with their keep masks")


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
    raise NotImplementedError(
        "Exercise 11.3.4b: f(null) + sum_k w_k (f(only k) - f(null)), skipping zero weights")


# =========================================================================== Exercise 11.3.4c
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
    raise NotImplementedError(
        "Exercise 11.3.4c: compare the caption's direction with the trajectory's and resolve")
