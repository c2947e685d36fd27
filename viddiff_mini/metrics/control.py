"""Ground-truth control metrics (section 11.3): did a sample do what its controls asked?

Every metric compares generated clips with what was *requested*, which on MovingShapes-101
is exact ground truth (no real data set has it):

=========================  ===================================================  =========
metric                     how                                                  better
=========================  ===================================================  =========
trajectory_error_px        centroid of each object's colour in the sample vs    lower
                           the requested path (px, NaN frames skipped)
masked_psnr_db             PSNR of the *unedited* region vs the source (drag    higher
                           editing; ``inf`` = bit-exact)
first_frame_psnr_db/ssim   frame 0 of the sample vs the given image             higher
                           (``_replaced``: with frame replacement during
                           sampling on top of the condition; a latent model
                           replaces on each step's decoded x0)
attribute_error            per attribute: |measured - requested| (speed px/     lower
                           frame, size px, direction degrees, brightness) or
                           colour mismatch rate
gravity_rel_error          gravity fitted on the sample's track vs the true g   lower
                           (bounce / throw clips)
text_color_acc /           caption colour and event order checked on the        higher
text_order_acc / clipsim   sample (:func:`~viddiff_mini.control.text.
                           caption_check`); clipsim with a trained
                           :class:`~viddiff_mini.control.text.VideoTextCLIP`
=========================  ===================================================  =========

Each comes with its yardstick: ``real_<metric>``, the same measurement on the real clips
(the tracker's and colour namer's own floor), and for a latent model ``ae_<metric>``, on
the autoencoder's round trip of those real clips: what a generator that reproduced their
latents would score (a cap where the decoder cannot express something, such as msh-ae's
fast falls; not where cleaner latents help, such as colour: see ``metrics/floors.py``).

:func:`evaluate_controls` samples a model trained with control conditions (``viddiff train
--conditions ...``) on test clips, giving it the clips' own ground-truth controls, and
computes every metric that applies; :func:`evaluate_control_run` does it for a run folder
(for ``viddiff eval``).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from viddiff_mini.control.animate import first_frame_fidelity as _ff_fidelity
from viddiff_mini.control.drag import masked_psnr as _masked_psnr
from viddiff_mini.control.text import COLORS, caption_check, measure_color
from viddiff_mini.control.trajectory import foreground_map, mask_centroids

__all__ = ["sample_decoded", "motion_request_report", "in_frame_request", "object_colors", "track_objects",
           "trajectory_error_px", "masked_psnr",
           "first_frame_fidelity", "attribute_error", "gravity_error",
           "text_video_consistency", "evaluate_controls", "evaluate_control_run"]


def _nanmean(values) -> float:
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    v = v[torch.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def object_colors(batch: dict) -> list[list[str | None]]:
    """Colour name of every object of a truth batch: ``[[name or None] * k] * b``."""
    video, masks = batch["video"].float().cpu(), batch["masks"].cpu()
    return [[measure_color(video[i], masks[i, k]) if masks[i, k].any() else None
             for k in range(masks.shape[1])] for i in range(video.shape[0])]


def track_objects(videos: torch.Tensor, colors) -> torch.Tensor:
    """Centroid tracks ``(b, k, t, 2)`` of the objects of given colours in ``videos``.

    videos ``(b, 3, t, h, w)``; colors: ``[[name or None] * k] * b``. An object is the
    pixels close to its colour (:func:`~viddiff_mini.control.trajectory.foreground_map`);
    NaN where it is not found (or its colour is None).
    """
    b, _, t = videos.shape[:3]
    k = max(len(c) for c in colors)
    out = torch.full((b, k, t, 2), float("nan"))
    for i in range(b):
        for j, name in enumerate(colors[i]):
            if name is None:
                continue
            fg = foreground_map(videos[i:i + 1].float().cpu(), color=COLORS[name])[0] > 0.5
            out[i, j] = mask_centroids(fg)
    return out


def trajectory_error_px(videos: torch.Tensor, requested: torch.Tensor, colors) -> dict:
    """Trajectory error in pixels of generated clips against requested paths.

    videos ``(b, 3, t, h, w)``; requested ``(b, k, t, 2)`` px (NaN = no request);
    colors: each object's colour name (to find it in the sample). Returns ``mean`` (over
    clips) and ``per_clip`` (mean Euclidean distance over the frames where both exist;
    NaN when the object is never found).
    """
    req = torch.as_tensor(requested, dtype=torch.float32).cpu()
    if req.ndim != 4 or req.shape[0] != videos.shape[0] or req.shape[2] != videos.shape[2]:
        raise ValueError(f"requested: expected (b, k, t, 2) with b={videos.shape[0]}, "
                         f"t={videos.shape[2]}, got {tuple(req.shape)}")
    got = track_objects(videos, colors)[:, :req.shape[1]]
    req = req[:, :got.shape[1]]
    d = (got - req).norm(dim=-1)                                   # (b, k, t)
    per_clip = [_nanmean(d[i].flatten().tolist()) for i in range(d.shape[0])]
    asked = torch.isfinite(req).all(-1)
    found = float((torch.isfinite(got).all(-1) & asked).sum() / asked.sum().clamp_min(1))
    return {"mean": _nanmean(per_clip), "per_clip": per_clip, "found": found}


def masked_psnr(video: torch.Tensor, source: torch.Tensor, edit_mask) -> float:
    """PSNR (dB) of the unedited region (outside ``edit_mask``); ``inf`` when identical."""
    return _masked_psnr(video, source, edit_mask)


def first_frame_fidelity(videos: torch.Tensor, images: torch.Tensor) -> dict:
    """PSNR (dB) and SSIM of frame 0 of ``videos (b, 3, t, h, w)`` vs ``images (b, 3, h, w)``."""
    return _ff_fidelity(videos.float().cpu(), images.float().cpu())


def attribute_error(videos: torch.Tensor, requested: list[dict], masks=None) -> dict:
    """Mean error per requested attribute over clips (see
    :func:`~viddiff_mini.control.attributes.attribute_errors`): speed px/frame, size px,
    direction degrees, brightness, colour = mismatch rate. NaN when never measurable.
    masks ``(b, k, t, h, w)``: measure object 0 by its mask; None (generated clips): a
    foreground estimate -- with two moving objects both count (their colours blend)."""
    from viddiff_mini.control.attributes import attribute_errors, measure_attributes

    if len(requested) != videos.shape[0]:
        raise ValueError(f"requested: expected one attribute dict per clip "
                         f"({videos.shape[0]}), got {len(requested)}")
    measured = measure_attributes(videos.float().cpu(), masks)
    per: dict[str, list[float]] = {}
    for req, got in zip(requested, measured):
        for k, v in attribute_errors(req, got).items():
            per.setdefault(k, []).append(v)
    return {k: _nanmean(v) for k, v in per.items()}


def gravity_error(videos: torch.Tensor, true_g, colors=None, rel_tol: float = 0.25) -> dict:
    """Fitted gravity of each clip's object track vs the true g (px/frame^2).

    true_g: a float or one per clip (clips with g <= 0 or NaN are skipped); colors: colour
    name of the falling object per clip (None: foreground estimate). Returns ``g_fit``
    (list), ``rel_error`` (mean |g_fit - g| / g; NaN fits count as error 1: no parabola
    could be seen) and ``n``.
    """
    from viddiff_mini.control.physics import extract_track, fit_gravity

    b = videos.shape[0]
    gs = [float(true_g)] * b if isinstance(true_g, (int, float)) else [float(g) for g in true_g]
    fits, errs = [], []
    for i in range(b):
        color = COLORS[colors[i]] if colors is not None and colors[i] else None
        track = extract_track(videos[i:i + 1].float().cpu(), color)[0]
        g = fit_gravity(track, rel_tol=rel_tol)
        fits.append(g)
        if gs[i] > 0 and math.isfinite(gs[i]):
            errs.append(abs(g - gs[i]) / gs[i] if math.isfinite(g) else 1.0)
    return {"g_fit": fits, "rel_error": _nanmean(errs), "n": len(errs)}


def text_video_consistency(videos: torch.Tensor, captions, clip_model=None) -> dict:
    """Does each clip match its caption? ``color_acc`` (caption colour among the object
    colours), ``objects_acc`` (every "<colour> <shape>" phrase has its object), ``order_acc`` (directional events in caption order; over captions that have
    two or more), and ``clipsim`` (mean cosine similarity under ``clip_model``, when given).
    Colours and order are measured on a foreground estimate (no masks: generated clips)."""
    if len(captions) != videos.shape[0]:
        raise ValueError(f"captions: expected {videos.shape[0]} captions, got {len(captions)}")
    checks = [caption_check(videos[i].float().cpu(), captions[i]) for i in range(len(captions))]
    col = [float(c["color_ok"]) for c in checks if c["color_ok"] is not None]
    obj = [float(c["objects_ok"]) for c in checks if c["objects_ok"] is not None]
    order = [float(c["order_ok"]) for c in checks if c["order_ok"] is not None]
    out = {"color_acc": _nanmean(col), "objects_acc": _nanmean(obj), "order_acc": _nanmean(order),
           "n_order": len(order)}
    if clip_model is not None:
        from viddiff_mini.control.text import clipsim
        out["clipsim"] = float(clipsim(videos.float(), list(captions), clip_model).mean())
    return out


@torch.no_grad()
def evaluate_controls(model, diffusion, cfg, n: int = 8, steps: int = 20, seed: int = 0,
                      clip_model=None, device=None, guidance=None, sampler: str = "ddim",
                      classes=None, drag: bool = True,
                      motion_guidance: float | None = None) -> dict:
    """Sample a control model on ``n`` test clips with their ground-truth controls; score.

    cfg: the run's TrainConfig (``cfg.conditions``, frames, size, fold, num_classes). The
    test clips are the first test clips of the run's labels ``classes`` (default: spread
    over the run's classes; a run over ``cfg.classes`` maps them to data-set classes); the
    model gets every control of ``cfg.conditions`` read from each clip's truth (:func:`~viddiff_mini.control.compose.build_cond`, nothing dropped) and
    ``guidance`` (None: the run's ``cfg.guidance``; a float, 1.0 = none; or ``{control:
    scale}``); ``motion_guidance``: the first frame's motion request's own scale, for the
    motion report (:func:`motion_request_report`). Metrics that apply:
    trajectory (``trajectory_error_px`` with ``trajectory_found``), first_frame (``first_frame_psnr_db``,
    ``first_frame_ssim``), attributes (``attribute_error/<name>``), text (``text_color_acc``,
    ``text_order_acc``, ``clipsim`` with ``clip_model``), always ``gravity_rel_error`` on
    the bounce / throw clips among them (``real_gravity_rel_error``: the same fit on the real
    clips), and with ``drag=True`` a drag edit of the first
    clip (masked blending): ``masked_psnr_db`` of the unedited region (a latent model also
    reports ``masked_psnr_decoded_db``, before paste-back). A latent model samples latents;
    every metric is measured on the decoded clips, and the real-clip yardsticks of
    trajectory, text and gravity get an ``ae_`` twin measured on the autoencoder's round
    trip of the same real clips (``ae_trajectory_error_px``, ``ae_text_color_acc``, ...,
    ``ae_gravity_rel_error``).
    """
    from viddiff_mini.control.compose import (
        build_cond,
        make_layout,
        truth_batch_for_run_labels,
    )

    device = torch.device(device) if device is not None else next(model.parameters()).device
    guidance = cfg.sampling_guidance(guidance)
    requested_guidance = guidance                  # before a dict becomes ControlGuidance
    conds = list(cfg.conditions)
    if classes is None:
        classes = torch.linspace(0, cfg.num_classes - 1, n).round().long()
    labels = torch.as_tensor(classes).reshape(-1)[:n]
    batch = truth_batch_for_run_labels(cfg, labels, device)
    if conds == ["label"]:
        cond, lay = {"label": batch["label"]}, make_layout(["label"])
    else:
        cond, lay = build_cond(conds, batch, device, drop_p=0.0, return_layout=True)
    net, guidance = guided_net(model, lay, guidance)
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = sample_decoded(net, diffusion, cfg, cond, len(labels), steps, sampler, guidance, g,
                       device)
    truth = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    colors = object_colors(truth)
    report: dict = {"conditions": conds, "n": int(labels.numel()), "steps": steps,
                    "sampler": sampler}
    from viddiff_mini.latent import load_latent, round_trip
    ae = load_latent(cfg, "cpu")
    # a latent model's samples are decoded clips, so each yardstick below also gets an
    # ``ae_`` twin on the autoencoder's round trip of the real clips (msh-ae, 2x in time and
    # per side, returns a fast fall as a staircase and shifts some object colours: gravity
    # ~60% off and caption colour ~80% on its round trip; metrics/floors.py)
    rec = None if ae is None else round_trip(ae, truth["video"])
    if "trajectory" in conds:
        te = trajectory_error_px(x, truth["trajectories"], colors)
        report["trajectory_error_px"], report["trajectory_found"] = te["mean"], te["found"]
        # the tracker's own error on the real clips: the floor a perfect model would score
        report["real_trajectory_error_px"] = trajectory_error_px(
            truth["video"], truth["trajectories"], colors)["mean"]
        if rec is not None:
            report["ae_trajectory_error_px"] = trajectory_error_px(
                rec, truth["trajectories"], colors)["mean"]
    if "first_frame" in conds:
        ff = first_frame_fidelity(x, truth["video"][:, :, 0])
        report["first_frame_psnr_db"], report["first_frame_ssim"] = ff["psnr"], ff["ssim"]
        # the same clips with frame replacement (animate mode "both", 11.3.2): the x0 hook
        # pastes the image into frame 0 at every step, so the rest of the clip is generated
        # around it; through a latent model's decoder frame 0 is then as exact as the
        # autoencoder's round trip allows
        from viddiff_mini.control.animate import first_frame_hook
        g = torch.Generator(device="cpu").manual_seed(seed)
        xr = sample_decoded(net, diffusion, cfg, cond, len(labels), steps, sampler, guidance,
                            g, device, x0_hook=first_frame_hook(batch["video"][:, :, 0]))
        ffr = first_frame_fidelity(xr, truth["video"][:, :, 0])
        report["first_frame_psnr_db_replaced"] = ffr["psnr"]
        report["first_frame_ssim_replaced"] = ffr["ssim"]
        if any(c.startswith("Move") for c in cfg.class_names()):
            report.update(motion_request_report(model, diffusion, cfg, n=n, steps=steps,
                                                seed=seed, guidance=requested_guidance or 1.0,
                                                sampler=sampler, device=device,
                                                motion_guidance=motion_guidance))
            if motion_guidance is not None:
                report["motion_guidance"] = float(motion_guidance)
    if "attributes" in conds:
        from viddiff_mini.control.attributes import attributes_from_truth
        for k, v in attribute_error(x, attributes_from_truth(truth)).items():
            report[f"attribute_error/{k}"] = v
    if "text" in conds:
        tv = text_video_consistency(x, truth["caption"], clip_model)
        report.update({f"text_{k}" if k != "clipsim" else k: v for k, v in tv.items()})
        # the same checks on the real clips of those captions: the yardstick
        real = text_video_consistency(truth["video"], truth["caption"])
        report.update({f"real_text_{k}": v for k, v in real.items()})
        if rec is not None:
            ae_tv = text_video_consistency(rec, truth["caption"])
            report.update({f"ae_text_{k}": v for k, v in ae_tv.items()})
    phys = [i for i, p in enumerate(truth["physics"]) if p.get("gravity", 0) > 0]
    if phys:
        true_g = [truth["physics"][i]["gravity"] for i in phys]
        fallers = [colors[i][0] for i in phys]
        ge = gravity_error(x[phys], true_g, fallers)
        report["gravity_rel_error"], report["gravity_n"] = ge["rel_error"], ge["n"]
        # the same fit on the real clips: the floor set by tracking a few-pixel object
        report["real_gravity_rel_error"] = gravity_error(truth["video"][phys], true_g,
                                                         fallers)["rel_error"]
        if rec is not None:
            report["ae_gravity_rel_error"] = gravity_error(rec[phys], true_g,
                                                           fallers)["rel_error"]
    if drag:
        report.update(_drag_report(model, diffusion, truth, cond, cfg, steps, seed, device))
    return report


def guided_net(model, layout, guidance, motion_guidance: float | None = None):
    """``(net, scale)`` for :func:`sample_decoded`: the model with one classifier-free
    guidance scale as it is, or, for per-control scales ``{control: scale}`` or a nested
    motion scale, the model wrapped in
    :class:`~viddiff_mini.control.compose.ControlGuidance` (which then owns the scales)."""
    from viddiff_mini.control.compose import ControlGuidance

    if isinstance(guidance, dict) or motion_guidance is not None:
        return ControlGuidance(model, layout, 1.0 if guidance is None else guidance,
                               motion_guidance), None
    return model, guidance


def sample_decoded(net, diffusion, cfg, cond: dict, n: int, steps: int, sampler: str,
                   guidance, generator, device, x0_hook=None) -> torch.Tensor:
    """``n`` clips ``(n, 3, t, h, w)`` on the CPU in [-1, 1]: a latent model's samples are
    drawn as latents (no [-1, 1] clamp on x0 there) and decoded by its autoencoder.
    ``x0_hook``: a pixel-space hook (``latent.sample_clips`` runs it on decoded x0)."""
    from viddiff_mini.latent import load_latent, sample_clips

    net.eval()
    x = sample_clips(net, diffusion, (n, 3, cfg.frames, cfg.size, cfg.size),
                     load_latent(cfg, device), x0_hook, cond=cond, sampler=sampler, steps=steps,
                     guidance=guidance, generator=generator, device=device)
    return x.float().cpu()


@torch.no_grad()
def motion_request_report(model, diffusion, cfg, n: int = 8, steps: int = 20, seed: int = 0,
                          guidance=None, sampler: str = "ddim", device=None,
                          motion_guidance: float | None = None, camera_warp: bool = True) -> dict:
    """Camera vs object motion on request (11.3.2), for a ``first_frame`` model.

    The first frames of ``n`` test clips of the run's ``Move*`` classes are animated four
    times, each request with the other motion still: object motion ``v`` (the clip's true
    object velocity), camera motion ``v`` (the background moves on screen, the object stays
    put in the world), and the two *against* the image, ``-v``. Why both: a Move image
    shows where its object starts, so it already suggests ``+v``; a model that reads the
    image and ignores the request passes the ``+v`` requests, and only the ``-v`` ones
    tell. :func:`~viddiff_mini.control.animate.measure_motion` splits each sample's motion
    into camera and object parts (the object found by its colour).

    A ``-v`` request from a Move image asks the object to leave the frame (a Move clip
    starts ``dist / 2`` off centre and travels ``dist``; on the cards' 32 test images the
    object's centre would leave it by frame 9-16), which no training clip shows and the
    colour mask cannot follow past the edge. So a fifth request asks ``-v`` scaled down per
    image until the object ends one pixel inside the frame (:func:`in_frame_request`):
    possible, and still against the image.

    Returns ``motion_split_acc``: over the ``+v`` requests, the fraction of samples whose
    larger part is the requested one (``motion_split_acc_against``: the same for ``-v``);
    ``{object,camera}_request_{camera,object}_err_px`` (and ``against_...``): mean
    distance of each part from what was asked, px/frame; ``motion_followed_acc``: over all
    ``4 n`` samples, the fraction where *both* parts are within half the requested speed
    of the request (the strict test); ``against_inframe_*``: the fifth request's errors,
    ``against_inframe_followed_acc`` (the strict test) and ``against_inframe_direction_acc``
    (the object's measured motion within 45 degrees of the request), with the requested
    speed ``against_inframe_speed_px``. ``real_*``: the split and the followed test on real
    Move (object) and Pan (camera) clips with their true masks. ``guidance``: None = the
    run's ``cfg.guidance``, 1.0 = none, or ``{control: scale}``; ``motion_guidance``: the
    motion request's own nested scale (:class:`~viddiff_mini.control.compose.ControlGuidance`);
    ``camera_warp``: False encodes camera requests without moving the image (the layout
    the model trained on; see :func:`~viddiff_mini.control.compose.encode_values`).
    """
    from viddiff_mini.control.animate import encode_motion, measure_motion, motion_from_truth
    from viddiff_mini.control.compose import encode_values, truth_batch_for_run_labels

    device = torch.device(device) if device is not None else next(model.parameters()).device
    guidance = cfg.sampling_guidance(guidance)
    names = cfg.class_names()
    movers = [i for i, c in enumerate(names) if c.startswith("Move")]
    pans = [i for i, c in enumerate(names) if c.startswith("Pan")]
    if "first_frame" not in cfg.conditions or not movers:
        raise ValueError(f"motion_request_report: needs a first_frame model with Move* classes "
                         f"(conditions {cfg.conditions}, classes {names[:4]} ...)")
    labels = torch.tensor([movers[j % len(movers)] for j in range(n)])
    batch = truth_batch_for_run_labels(cfg, labels, device)
    truth = {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    _, v = motion_from_truth(truth)                                  # (n, 2) px/frame
    tol = 0.5 * v.norm(dim=-1)                                       # (n,) "followed" radius
    colors = [c[0] for c in object_colors(truth)]
    still = torch.zeros_like(v)

    def animate(cam: torch.Tensor, obj: torch.Tensor):
        """Animate the n first frames asking camera ``cam`` and object ``obj`` (n, 2)
        px/frame; returns the measured (camera, object) motion, (n, 2) each (object NaN
        where its colour is not found)."""
        motion = torch.stack([encode_motion(camera=c.tolist(), obj=o.tolist())
                              for c, o in zip(cam, obj)])
        cond, lay = encode_values({"first_frame": (batch["video"][:, :, 0], motion.to(device))},
                                  cfg.conditions, n, cfg.frames, cfg.size, device,
                                  camera_warp=camera_warp)
        net, scale = guided_net(model, lay, guidance, motion_guidance)
        g = torch.Generator(device="cpu").manual_seed(seed)
        x = sample_decoded(net, diffusion, cfg, cond, n, steps, sampler, scale, g, device)
        got_cam, got_obj = [], []
        for i in range(n):
            fg = foreground_map(x[i:i + 1], color=COLORS[colors[i]])[0] > 0.5 \
                if colors[i] else None
            m = measure_motion(x[i], masks=None if fg is None or not fg.any() else fg[None])
            got_cam.append(m["camera"])
            got_obj.append(m["object"] if m["object"] is not None else (float("nan"),) * 2)
        return torch.tensor(got_cam), torch.tensor(got_obj)

    out: dict = {}
    split: dict = {"": [], "_against": []}
    followed = []
    for ask, tag, cam, obj in (("object", "", still, v), ("camera", "", v, still),
                               ("object", "_against", still, -v),
                               ("camera", "_against", -v, still)):
        got_cam, got_obj = animate(cam, obj)
        err_cam, err_obj = (got_cam - cam).norm(dim=-1), (got_obj - obj).norm(dim=-1)
        split[tag].append((got_cam.norm(dim=-1) > got_obj.norm(dim=-1)) == (ask == "camera"))
        followed.append((err_cam < tol) & (err_obj < tol))           # NaN object: not followed
        prefix = "against_" if tag else ""
        out[f"{prefix}{ask}_request_camera_err_px"] = _nanmean(err_cam.tolist())
        out[f"{prefix}{ask}_request_object_err_px"] = _nanmean(err_obj.tolist())
    # the fifth request: against the image, scaled so that the object stays in frame
    obj = in_frame_request(truth["trajectories"][:, 0, 0], truth["masks"][:, 0, 0], -v,
                           cfg.frames, cfg.size)
    got_cam, got_obj = animate(still, obj)
    err_cam, err_obj = got_cam.norm(dim=-1), (got_obj - obj).norm(dim=-1)
    tol_in = 0.5 * obj.norm(dim=-1)
    right_way = torch.nn.functional.cosine_similarity(got_obj, obj, dim=-1) > 0.7
    out.update({
        "against_inframe_object_request_object_err_px": _nanmean(err_obj.tolist()),
        "against_inframe_object_request_camera_err_px": _nanmean(err_cam.tolist()),
        "against_inframe_followed_acc": float(((err_cam < tol_in) & (err_obj < tol_in))
                                              .float().mean()),
        "against_inframe_direction_acc": float(right_way.float().mean()),
        "against_inframe_speed_px": float(obj.norm(dim=-1).mean())})
    real_split, real_followed = [], []
    for group, is_cam in ((movers, False), (pans, True)):
        if not group:
            continue
        rb = truth_batch_for_run_labels(cfg, torch.tensor(group), "cpu")
        r_cam, r_obj = motion_from_truth(rb)
        for i in range(len(group)):
            m = measure_motion(rb["video"][i].float(), masks=rb["masks"][i, :1])
            o = torch.tensor(m["object"] if m["object"] is not None else (0.0, 0.0))
            c = torch.tensor(m["camera"])
            real_split.append(float((c.norm() > o.norm()) == is_cam))
            speed = (r_cam[i] if is_cam else r_obj[i]).norm()
            real_followed.append(float(((c - r_cam[i]).norm() < 0.5 * speed)
                                       and ((o - r_obj[i]).norm() < 0.5 * speed)))
    return {"motion_split_acc": float(torch.cat(split[""]).float().mean()), "motion_n": 2 * n,
            "motion_split_acc_against": float(torch.cat(split["_against"]).float().mean()),
            "motion_followed_acc": float(torch.cat(followed).float().mean()),
            "motion_followed_n": 4 * n, **out,
            "requested_speed_px": float(v.norm(dim=-1).mean()),
            "real_motion_split_acc": _nanmean(real_split), "real_motion_n": len(real_split),
            "real_motion_followed_acc": _nanmean(real_followed)}


def in_frame_request(start: torch.Tensor, mask: torch.Tensor, velocity: torch.Tensor,
                     frames: int, size: int, margin: float = 1.0) -> torch.Tensor:
    """``velocity (n, 2)`` px/frame scaled down per clip (never up) so that an object
    starting at ``start (n, 2)`` (x, y) with frame-0 mask ``mask (n, h, w)`` ends, after
    ``frames - 1`` frames, with its whole extent ``margin`` px inside a ``size`` frame.

    The object's extent is read from the mask, per axis, on the side it moves towards; a
    clip with no room at all gets a still request. Returns ``(n, 2)``.
    """
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    out = torch.zeros(velocity.shape, dtype=torch.float32)
    for i in range(velocity.shape[0]):
        v, p, m = velocity[i].float(), start[i].float(), mask[i].bool()
        speed = float(v.norm())
        if speed == 0 or not torch.isfinite(p).all():
            continue
        travel = []                                  # px along v before an edge is reached
        for axis, coord in enumerate((xs, ys)):
            step = float(v[axis]) / speed            # direction cosine on this axis
            if abs(step) < 1e-6:
                continue
            sign = 1.0 if step > 0 else -1.0
            extent = float(((coord[m] - p[axis]) * sign).max()) if m.any() else 0.0
            to_edge = (size - 1 - margin - float(p[axis])) if sign > 0 else (float(p[axis]) - margin)
            travel.append((to_edge - extent) / abs(step))
        out[i] = v * min(1.0, max(0.0, min(travel)) / ((frames - 1) * speed))
    return out


def _drag_report(model, diffusion, truth, cond, cfg, steps, seed, device) -> dict:
    """Drag object 0 of the first clip by a quarter of the frame to the right; report the
    masked PSNR of the unedited region (inf: bit-exact) and, for a latent model, the same
    before the unedited pixels are pasted back (``masked_psnr_decoded_db``)."""
    from viddiff_mini.control.drag import drag_edit
    from viddiff_mini.latent import load_latent

    src = truth["video"][:1].to(device)
    start = truth["trajectories"][0, 0, 0]
    if not torch.isfinite(start).all():
        return {}
    size = src.shape[-1]
    target = (start + torch.tensor([size / 4, 0.0])).clamp(0, size - 1)
    one = {k: v[:1] for k, v in cond.items()} if isinstance(cond, dict) else None
    out = drag_edit(model, diffusion, src, [start.tolist()], [target.tolist()], cond=one,
                    radius=max(2.0, size / 10), steps=steps,
                    generator=torch.Generator().manual_seed(seed),
                    autoencoder=load_latent(cfg, device))
    rep = {"masked_psnr_db": out["masked_psnr"]}
    if "masked_psnr_decoded" in out:
        rep["masked_psnr_decoded_db"] = out["masked_psnr_decoded"]
    return rep


def evaluate_control_run(run: str | Path, n: int = 8, steps: int = 20, seed: int = 0,
                         clip_model=None, guidance=None, device=None) -> dict:
    """:func:`evaluate_controls` for a run folder written by ``viddiff train --conditions``."""
    from viddiff_mini.train import load_run

    model, diffusion, cfg = load_run(run, device=device)
    report = evaluate_controls(model, diffusion, cfg, n=n, steps=steps, seed=seed,
                               clip_model=clip_model, guidance=guidance)
    report["run"] = str(run)
    return report
