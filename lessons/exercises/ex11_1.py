"""Exercises for lesson 11.1 (data and baselines). Fill in each function.

Each function raises ``NotImplementedError("Exercise 11.1.<k><letter>: ...")`` until you
write it. Check your work in a notebook with::

    from viddiff_mini.grading import check
    check("11.1.1a")

or from a terminal with ``pytest tests/exercises -k ex11_1`` (add ``--exercise 11.1.1a``
for one exercise). Video tensors are ``(b, c, t, h, w)``, float, in [-1, 1].

The exercise cells at the end of each notebook re-read this file every time they run (edit,
save, re-run the cell: no kernel restart) and print "implement 11.x.yz to see yours here"
while a function still raises ``NotImplementedError``. Each exercise there has a difficulty,
a time estimate and two folded hints; the student guide is ``lessons/README.md``.
"""

from __future__ import annotations

import torch


# =========================================================================== Exercise 11.1.1a
def interpolate_frames(video: torch.Tensor, factor: int, method: str = "linear",
                       flow: torch.Tensor | None = None, max_shift: int = 4) -> torch.Tensor:
    """Frame interpolation baseline: insert ``factor - 1`` frames between each pair.

    Args:
        video: ``(b, c, t, h, w)`` float in [-1, 1], ``t >= 2``.
        factor: integer >= 1; the output has ``(t - 1) * factor + 1`` frames.
        method: ``"linear"`` blends the two neighbours: the frame at fraction
            ``a = k / factor`` of the way from frame ``i`` to ``i + 1`` is
            ``(1 - a) * frame_i + a * frame_{i+1}``.
            ``"flow"`` moves both neighbours along the motion before blending:
            ``(1 - a) * frame_i(p - a * F) + a * frame_{i+1}(p + (1 - a) * F)``,
            where ``F`` is the motion from frame ``i`` to ``i + 1`` in pixels (sample with
            ``torch.nn.functional.grid_sample``).
        flow: optional ``(b, 2, t - 1, h, w)`` forward flow ``(dx, dy)`` in pixels from frame
            ``i`` to ``i + 1``. When ``None`` (method ``"flow"``), estimate one global
            translation per frame pair by block matching: try every integer shift
            ``(dx, dy)`` with ``|dx|, |dy| <= max_shift`` and keep the one with the smallest
            mean absolute difference on the overlapping region.
        max_shift: search radius in pixels for the estimated flow.

    Returns:
        ``(b, c, (t - 1) * factor + 1, h, w)``, same dtype; the original frames are kept
        exactly at positions ``0, factor, 2 * factor, ...``.

    Raises:
        ValueError: a bad ``video`` shape, ``factor < 1``, an unknown ``method`` or a
            ``flow`` of the wrong shape.
    """
    raise NotImplementedError(
        "Exercise 11.1.1a: interpolate frames by linear blending and by flow warping")


# =========================================================================== Exercise 11.1.1b
def temporal_consistency_loss(pred: torch.Tensor, target: torch.Tensor | None = None,
                              flow: torch.Tensor | None = None) -> torch.Tensor:
    """A temporal-consistency loss: compare how ``pred`` changes over time with ``target``.

    A frame-level loss (``mean (pred - target)^2``) lets every frame be a little wrong in
    its own way, which shows up as flicker. This loss looks at the *change* between
    consecutive frames instead.

    Define the change of a clip ``x`` (b, c, t, h, w) between frame i and i + 1 as

    * without flow: ``d_i(x) = x_{i+1} - x_i``, shape (b, c, t - 1, h, w);
    * with flow: ``d_i(x) = warp(x_{i+1}, flow_i) - x_i``, where
      ``warp(img, F)(p) = img(p + F(p))`` (bilinear; e.g. ``viddiff_mini.analysis.motion.warp``
      on frames folded to ``(b (t-1)) c h w``). Warping first brings the next frame back
      along the motion, so an object that simply moves produces no change: only change
      that the motion does not explain (flicker, popping) is left.

    Then ``loss = mean((d(pred) - d(target))^2)``, or ``mean(d(pred)^2)`` when ``target``
    is None (a pure smoothness prior, which also damps real motion: over-smoothing).

    Args:
        pred: (b, c, t, h, w) float, e.g. a model's x0 prediction (gradients must flow).
        target: None or (b, c, t, h, w), the same shape as ``pred``.
        flow: None or (b, 2, t - 1, h, w) forward flow (dx, dy) in pixels from frame i to
            i + 1 (the MovingShapes ground-truth convention).

    Returns:
        A scalar tensor (0-dim). With a single frame (t = 1) there is no change: return 0
        (``pred.sum() * 0`` keeps the graph).

    Raises:
        ValueError: ``pred`` not (b, c, t, h, w) float, ``target`` of another shape, or
            ``flow`` not (b, 2, t - 1, h, w).
    """
    raise NotImplementedError(
        "Exercise 11.1.1b: compare frame-to-frame changes (optionally flow-warped)")


# =========================================================================== Exercise 11.1.1c
def detect_temporal_failures(video: torch.Tensor, flicker_threshold: float = 0.02,
                             drift_threshold: float = 0.2) -> dict[str, torch.Tensor]:
    """Detect the two classic failure cases of a video generator: flicker and drift.

    Work with the per-frame mean brightness ``b_i`` = mean of frame i over (c, h, w), shape
    (b, t). Then per clip:

    * ``flicker`` = mean over i of ``|b_{i+1} - 2 b_i + b_{i-1}|`` (second difference):
      brightness that jumps up and back down scores high, while a slow steady fade (a
      linear ramp) scores 0. Clips with fewer than 3 frames get 0.
    * ``drift`` = ``|b_{t-1} - b_0|``: how far the last frame's brightness wandered from the
      first frame's (a slow change of appearance that flicker does not see).

    Args:
        video: (b, c, t, h, w) float in [-1, 1].
        flicker_threshold, drift_threshold: a clip is flagged when its score is *strictly*
            greater than the threshold.

    Returns:
        ``{"flicker": (b,) float, "drift": (b,) float, "flickering": (b,) bool,
        "drifting": (b,) bool}``.

    Raises:
        ValueError: ``video`` is not (b, c, t, h, w) float (use
            ``viddiff_mini.utils.check_video``).
    """
    raise NotImplementedError(
        "Exercise 11.1.1c: score flicker (2nd difference) and drift of frame brightness")


# =========================================================================== Exercise 11.1.2a
def representation_bytes(shape, dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """Memory of one video batch in three representations (RGB vs optical flow).

    For ``shape = (b, c, t, h, w)``:

    * ``"rgb"``: every frame, ``b * c * t * h * w`` elements;
    * ``"flow"``: one (dx, dy) field per consecutive frame pair, ``b * 2 * (t - 1) * h * w``;
    * ``"keyframe_flow"``: the first frame plus the flow, ``b * c * h * w + flow``
      (enough to rebuild the clip by warping, if appearance never changes: see
      :func:`reconstruct_from_flow`).

    Each count is multiplied by the element size of ``dtype`` in bytes
    (``torch.empty((), dtype=dtype).element_size()``: 1 for uint8, 2 for float16/bfloat16,
    4 for float32).

    Example: (1, 3, 16, 64, 64) in float32 -> rgb 786432, flow 491520,
    keyframe_flow 540672.

    Args:
        shape: a tuple of 5 positive ints (b, c, t, h, w).
        dtype: a ``torch.dtype``.

    Returns:
        ``{"rgb": int, "flow": int, "keyframe_flow": int}`` in bytes.

    Raises:
        ValueError: ``shape`` is not 5 positive ints, or ``dtype`` is not a torch.dtype.
    """
    raise NotImplementedError(
        "Exercise 11.1.2a: count bytes of a clip as RGB, as flow and as key frame + flow")


def reconstruct_from_flow(keyframe: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Rebuild a clip from its key frame and its optical flow (the "keyframe_flow" storage).

    Frame 0 is the key frame; every next frame is the previous *reconstructed* frame moved
    along the flow:

        ``frame_{i+1}(p) = frame_i(p - flow_i(p))``

    where ``flow_i`` is the forward motion ``(dx, dy)`` in pixels from frame ``i`` to
    ``i + 1`` (content at ``p`` in frame ``i`` is at ``p + flow_i`` in frame ``i + 1``).
    Sample with bilinear interpolation and border padding, e.g.
    ``viddiff_mini.analysis.motion.warp(frame, -flow_i)`` (a backward warp,
    ``warp(image, f)(p) = image(p + f(p))``).

    Comparing ``reconstruct_from_flow(video[:, :, 0], flow)`` with ``video`` is the other half
    of the RGB-vs-flow comparison: flow is cheaper to store (see
    :func:`representation_bytes`) but only explains *motion*; a change of appearance
    (lighting, a fade, new content entering at the border) is lost.

    Example: one row ``[0, 1, 2, 3, 4, 5]`` moved by flows ``dx = +1, +1, -2`` gives frames
    ``[0, 1, 2, 3, 4, 5]``, ``[0, 0, 1, 2, 3, 4]``, ``[0, 0, 0, 1, 2, 3]``,
    ``[0, 1, 2, 3, 3, 3]`` (border padding repeats the edge; what left the frame is gone).

    Args:
        keyframe: ``(b, c, h, w)``.
        flow: ``(b, 2, t - 1, h, w)`` (``t - 1 = 0`` gives the key frame alone).

    Returns:
        ``(b, c, t, h, w)``, the dtype of ``keyframe``.

    Raises:
        ValueError: ``keyframe`` is not 4-D, or ``flow`` is not ``(b, 2, t - 1, h, w)``
            for the key frame's ``b, h, w``.
    """
    raise NotImplementedError(
        "Exercise 11.1.2a: rebuild the clip by warping the key frame along the flow")


# =========================================================================== Exercise 11.1.2b
class CheckpointedSequential(torch.nn.Module):
    """Gradient checkpointing: run blocks in sequence but store fewer activations.

    Normally autograd stores the intermediate activations of every layer for backward.
    With ``torch.utils.checkpoint.checkpoint(fn, x, use_reentrant=False)`` only the input
    ``x`` of ``fn`` is stored, and ``fn`` is run a second time during backward to recompute
    what is needed: memory for compute.

    Build it as ``CheckpointedSequential(blocks, segments=None)``:

    * ``blocks``: a list (or ``nn.Sequential``) of modules, each (n, ...) -> (n, ...);
      store them in an ``nn.ModuleList`` so their parameters are registered.
    * ``segments``: how many checkpointed groups of *consecutive* blocks to make (None =
      one block per segment); an int in [1, len(blocks)], else ``ValueError``. Split the
      blocks into nearly equal consecutive runs.

    ``forward(x)`` runs the blocks in order and returns the same values as running them
    plainly. When gradients are enabled (``torch.is_grad_enabled()``) each segment runs
    through ``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``; under
    ``torch.no_grad()`` just run the blocks.

    Outputs and gradients (of the input and every parameter) must equal those of the
    plain sequence; only the stored activations shrink.
    """

    def __init__(self, blocks, segments: int | None = None):
        super().__init__()
        raise NotImplementedError(
            "Exercise 11.1.2b: wrap groups of blocks in torch.utils.checkpoint.checkpoint")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(
            "Exercise 11.1.2b: wrap groups of blocks in torch.utils.checkpoint.checkpoint")


# =========================================================================== Exercise 11.1.2c
def amp_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                   target: torch.Tensor, dtype: torch.dtype = torch.bfloat16,
                   scaler=None) -> float:
    """One mixed-precision (AMP) training step.

    1. ``model.train()``; zero the gradients.
    2. Run the forward pass under ``torch.autocast(device_type=x.device.type, dtype=dtype)``
       — matmuls and convolutions then run in ``dtype`` (bfloat16 works on CPU too) while
       the parameters stay float32 (do *not* convert the model with ``.half()``).
    3. Compute the MSE loss between the output and ``target`` in float32, outside autocast
       (cast the output with ``.float()``).
    4. Backward and step. With a ``scaler`` (a ``torch.amp.GradScaler``, needed for float16
       on CUDA) use ``scaler.scale(loss).backward()``, ``scaler.step(optimizer)``,
       ``scaler.update()``; without one, ``loss.backward()`` and ``optimizer.step()``.

    Args:
        model: any module mapping ``x`` to a tensor shaped like ``target``.
        optimizer: an optimizer over ``model``'s parameters.
        x: input batch; target: float tensor, the output's shape.
        dtype: the autocast dtype (torch.bfloat16 or torch.float16).
        scaler: optional GradScaler.

    Returns:
        The loss of this step as a Python float.
    """
    raise NotImplementedError("Exercise 11.1.2c: one training step under torch.autocast")


# =========================================================================== Exercise 11.1.3a
def flow_to_color(flow: torch.Tensor, max_mag: float | None = None) -> torch.Tensor:
    """Visualise optical flow with the colour wheel: hue = direction, saturation = speed.

    For each pixel with flow (dx, dy) (pixels; dy points *down*, image coordinates):

    * hue ``H = atan2(dy, dx) / (2 pi)`` taken modulo 1, so right = 0 (red), down = 0.25,
      left = 0.5 (cyan), up = 0.75;
    * saturation ``S = min(|flow| / max_mag, 1)`` with ``max_mag`` defaulting to the largest
      magnitude in the field (so zero motion is white);
    * value ``V = 1``.

    Convert HSV to RGB with the standard hexcone formula: for n = 5, 3, 1 (R, G, B),
    ``k = (n + 6 H) mod 6`` and the channel is ``V - V S max(0, min(k, 4 - k, 1))``.
    Hand-worked: right at full speed -> (1, 0, 0); down -> (0.5, 1, 0); left -> (0, 1, 1);
    up -> (0.5, 0, 1); right at half speed -> (1, 0.5, 0.5); no motion -> (1, 1, 1).

    Args:
        flow: (..., 2, h, w) float, channel 0 = dx, channel 1 = dy.
        max_mag: magnitude shown at full saturation (None: the field's maximum; if that is
            0 the image is white).

    Returns:
        (..., 3, h, w) float RGB in [0, 1].

    Raises:
        ValueError: ``flow`` is not (..., 2, h, w).
    """
    raise NotImplementedError("Exercise 11.1.3a: map flow direction to hue, speed to saturation")


# =========================================================================== Exercise 11.1.3b
def decompose_global_local(flow: torch.Tensor, model: str = "affine",
                           threshold: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Split optical flow into global (camera) motion and local (object) motion.

    A camera pan, zoom or roll moves every pixel according to one simple model; objects
    add their own motion on top. Fit the global model by least squares and call the rest
    local:

    * ``model="translation"``: u(x, y) = a0, v(x, y) = a1;
    * ``model="affine"``: u = a0 + a1 x + a2 y, v = a3 + a4 x + a5 y (pan + zoom + rotation +
      shear), with (x, y) the pixel column and row.

    Stack the u equations of all pixels over the v equations into one linear system
    ``A @ params = flow`` (A has 2 h w rows) and solve it with ``torch.linalg.lstsq``.
    A moving object would bias that fit, so fit *twice*: first on all pixels, then again
    using only the inlier pixels whose residual ``|flow - fitted|`` (the length of the 2-D
    residual vector) is below ``threshold`` pixels. (If fewer inliers than parameters
    remain, keep the first fit.)

    Args:
        flow: (n, 2, h, w) float, (dx, dy) in pixels; each of the n fields separately.
        model: "translation" or "affine".
        threshold: inlier threshold in pixels for the second fit.

    Returns:
        ``(global_flow, local_flow)``, both (n, 2, h, w), ``global + local == flow``.

    Raises:
        ValueError: unknown ``model`` or ``flow`` not (n, 2, h, w).
    """
    raise NotImplementedError(
        "Exercise 11.1.3b: least-squares global motion, refit on inliers, residual = local")


# =========================================================================== Exercise 11.1.3c
def smooth_trajectory(traj: torch.Tensor, lam: float = 10.0) -> torch.Tensor:
    """A motion prior: pull a jittery trajectory towards constant velocity.

    Constant velocity means zero acceleration, i.e. zero second difference
    ``p_{i+1} - 2 p_i + p_{i-1}``. Find the path p closest to the observed one under that
    prior:  ``argmin_p ||p - traj||^2 + lam * ||D2 p||^2``, where D2 is the (t - 2, t)
    matrix with rows (..., 1, -2, 1, ...). Setting the gradient to 0 gives the linear
    system ``(I + lam D2^T D2) p = traj`` (solve it with ``torch.linalg.solve``; x and y
    are independent, and the same matrix serves every trajectory in the batch).

    Properties: ``lam = 0`` returns the input; a constant-velocity path is returned
    unchanged for every ``lam``; larger ``lam`` gives smaller accelerations.

    Args:
        traj: (..., t, 2) float points (x, y) per frame, no NaN.
        lam: smoothing weight >= 0.

    Returns:
        (..., t, 2), same dtype. With t < 3 there is no acceleration: return a copy.

    Raises:
        ValueError: ``traj`` not (..., t, 2), or ``lam < 0``.
    """
    raise NotImplementedError(
        "Exercise 11.1.3c: solve (I + lam D2^T D2) p = traj for a constant-velocity prior")


# =========================================================================== Exercise 11.1.4a
def quality_check(frames: torch.Tensor, min_frames: int = 8, min_brightness: float = 20.0,
                  min_motion: float = 0.5, max_jump: float = 60.0) -> tuple[bool, str]:
    """One stage of a video-data quality filter: keep the clip or say why not.

    Input is one decoded clip, uint8 (t, h, w, c) in [0, 255] (the IO format). Apply the
    checks *in this order* and return at the first failure:

    1. ``"too_short"``: fewer than ``min_frames`` frames;
    2. ``"too_dark"``: mean pixel value < ``min_brightness``;
    3. ``"static"``: the mean over consecutive pairs of mean |frame_{i+1} - frame_i| is
       < ``min_motion`` (a still image posing as a video);
    4. ``"scene_cut"``: the largest per-pair mean |frame_{i+1} - frame_i| is > ``max_jump``
       (a hard cut: two shots in one clip).

    Convert to float before subtracting (uint8 arithmetic wraps around: 3 - 5 = 254).

    Returns:
        ``(True, "ok")`` for a clip that passes, else ``(False, reason)`` with one of the
        four reasons above.

    Raises:
        ValueError: ``frames`` is not a uint8 tensor with 4 dims.
    """
    raise NotImplementedError("Exercise 11.1.4a: check length, brightness, motion, scene cuts")


# =========================================================================== Exercise 11.1.4b
def preprocess_clip(frames: torch.Tensor, size: int, num_frames: int,
                    stride: int = 1) -> torch.Tensor:
    """Efficient preprocessing of a decoded clip for a video model.

    uint8 (T, H, W, C) -> float32 (C, num_frames, size, size) in [-1, 1]:

    1. temporal subsampling *first*: keep frames 0, stride, 2 stride, ...,
       (num_frames - 1) stride — converting and resizing only those is the efficient part
       (a 300-frame clip sampled at 16 frames costs 16 resizes, not 300);
    2. move channels: (t, H, W, C) -> (t, C, H, W), float;
    3. resize so that the *shorter* side equals ``size`` (keep the aspect ratio;
       ``F.interpolate(..., mode="bilinear", antialias=True)``);
    4. centre-crop the longer side to ``size`` (take the middle);
    5. map [0, 255] to [-1, 1] (``x / 127.5 - 1``) and return (C, num_frames, size, size).

    Raises:
        ValueError: ``frames`` not uint8 (t, h, w, c), or fewer than
            ``(num_frames - 1) * stride + 1`` frames (say how many are needed).
    """
    raise NotImplementedError(
        "Exercise 11.1.4b: subsample frames, resize the short side, centre-crop, scale")


# =========================================================================== Exercise 11.1.4c
def make_benchmark(n_per_class: int, seed: int = 0, fold: int = 1,
                   classes=None) -> list[tuple[int, int]]:
    """Define a small, reproducible evaluation benchmark on MovingShapes-101.

    A benchmark is only useful if everyone evaluates on the *same* clips, balanced over
    classes and never seen in training. Build it from the test split:

    1. ``viddiff_mini.data.synthetic.split_indices("test", fold)`` gives the test clip
       indices (the fold's test *groups*, disjoint from its training groups) and
       ``synthetic.clip_index_table()[i]`` is ``(label, group, clip_in_group)`` of clip i.
    2. For each class (all 101, or the labels in ``classes``), shuffle that class's test
       indices (in increasing order, as ``split_indices`` gives them) with ``torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000
       + label))`` and keep the first ``n_per_class``. (One generator per class: asking for
       fewer classes never changes the clips of the others.)
    3. Return the (clip index, label) pairs sorted by (label, index).

    Args:
        n_per_class: positive int; a class with fewer test clips -> ``ValueError``.
        seed: selects a different but equally valid benchmark.
        fold: 1, 2 or 3.
        classes: None (all classes) or an iterable of labels.

    Returns:
        ``list[tuple[int, int]]``, ``n_per_class * n_classes`` pairs.
    """
    raise NotImplementedError(
        "Exercise 11.1.4c: pick n test clips per class with a seeded generator")
