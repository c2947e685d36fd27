"""What an autoencoder lets a latent model show: every yardstick on its round trip of real clips.

A latent diffusion model's samples are decoded latents. Measuring the control metrics and
the probe on the round trip (encode, then decode) of held-out real clips says what a
generator that reproduced the real clips' latents would score, before any diffusion model is
trained. Where the decoder cannot express something it is a hard cap: msh-ae decodes each
pair of frames nearly alike, so no generator on its latents shows a fast fall's parabola
(the first msh-trajectory, on msh-ae: gravity 43% off, the round trip of the same clips
33%; the same recipe on msh-ae-t1's latents: 3.2%). Where it is a
matter of how clean the latent is, a generator can beat it: msh-text names the caption
colour in 87.5% of its samples, msh-ae's round trip of the real clips in 75%. So the floors
tell which autoencoder a control needs:

    from viddiff_mini.metrics.floors import round_trip_floors
    round_trip_floors("msh-ae")      # gravity ~0.59 off, caption colour 0.75, ...
    round_trip_floors("msh-ae-t1")   # gravity ~0.03 off, caption colour 0.97, ...

``python scripts/ae_floors.py msh-ae msh-ae-t1`` prints the two side by side. The clip sets
are the ones the generator cards are measured on: held-out clips of the cpu-text,
cpu-trajectory and cpu-class24 classes, and six held-out clips of each throw / bounce class.
"""

from __future__ import annotations

import torch

from viddiff_mini.metrics.control import (
    gravity_error,
    object_colors,
    text_video_consistency,
    trajectory_error_px,
)

PHYSICS_CLASSES = ("ThrowCircle", "ThrowSquare", "BounceSquare", "BounceCircle",
                   "BounceSoftCircle", "BounceSoftSquare")


@torch.no_grad()
def round_trip_floors(latent: str, n_text: int = 32, n_paths: int = 32, n_physics: int = 6,
                      n_probe: int = 4, probe=None) -> dict:
    """The control and probe yardsticks on ``latent``'s round trip of held-out real clips.

    latent: a pretrained autoencoder name or a ``viddiff train-ae`` run (as ``--latent``).
    Returns ``{name: value}`` with, for each, the same measurement on the raw clips
    (``real_*``): ``text_color_acc`` (``n_text`` cpu-text captions), ``trajectory_error_px``
    (``n_paths`` cpu-trajectory paths), ``gravity_rel_error`` (``n_physics`` clips of each
    class of :data:`PHYSICS_CLASSES`), ``probe_in_run_24`` / ``probe_101way_24``
    (``n_probe`` clips of each cpu-class24 class), ``psnr_db``.
    """
    from viddiff_mini.config import get_preset
    from viddiff_mini.control.animate import psnr
    from viddiff_mini.control.compose import truth_batch_for_labels, truth_batch_for_run_labels
    from viddiff_mini.data.synthetic import class_ids_of
    from viddiff_mini.evaluate import real_clips_of
    from viddiff_mini.latent import load_latent, round_trip
    from viddiff_mini.metrics.probe import load_probe, probe_accuracy

    out: dict = {"latent": str(latent)}
    cfg = get_preset("cpu-text", latent=latent)
    ae = load_latent(cfg)
    b = truth_batch_for_run_labels(
        cfg, torch.linspace(0, cfg.num_classes - 1, n_text).round().long(), "cpu")
    real = b["video"].float()
    rec = round_trip(ae, real)
    out["text_color_acc"] = text_video_consistency(rec, b["caption"])["color_acc"]
    out["real_text_color_acc"] = text_video_consistency(real, b["caption"])["color_acc"]
    out["psnr_db"] = psnr(rec, real)

    cfg = get_preset("cpu-trajectory", latent=latent)
    b = truth_batch_for_run_labels(
        cfg, torch.linspace(0, cfg.num_classes - 1, n_paths).round().long(), "cpu")
    colors = object_colors(b)
    out["trajectory_error_px"] = trajectory_error_px(
        round_trip(ae, b["video"]), b["trajectories"], colors)["mean"]
    out["real_trajectory_error_px"] = trajectory_error_px(
        b["video"].float(), b["trajectories"], colors)["mean"]

    ids = class_ids_of(list(PHYSICS_CLASSES))
    b = truth_batch_for_labels(torch.tensor(ids).repeat_interleave(n_physics), cfg.frames,
                               cfg.size)
    phys = [i for i, p in enumerate(b["physics"]) if p.get("gravity", 0) > 0]
    g = [b["physics"][i]["gravity"] for i in phys]
    colors = object_colors(b)
    fallers = [colors[i][0] for i in phys]
    real = b["video"][phys].float()
    out["gravity_rel_error"] = gravity_error(round_trip(ae, real), g, fallers)["rel_error"]
    out["real_gravity_rel_error"] = gravity_error(real, g, fallers)["rel_error"]
    out["gravity_n"] = len(phys)

    probe = probe if probe is not None else load_probe()
    cfg = get_preset("cpu-class24", latent=latent)
    ids = cfg.class_ids()
    real, labels = real_clips_of(ids, n_probe, cfg.frames, cfg.size, cfg.fold)
    rec = round_trip(ae, real)
    out["probe_in_run_24"] = probe_accuracy(probe, rec, labels, restrict_to=ids)["accuracy"]
    out["probe_101way_24"] = probe_accuracy(probe, rec, labels)["accuracy"]
    out["real_probe_in_run_24"] = probe_accuracy(probe, real, labels,
                                                 restrict_to=ids)["accuracy"]
    out["real_probe_101way_24"] = probe_accuracy(probe, real, labels)["accuracy"]
    return out
