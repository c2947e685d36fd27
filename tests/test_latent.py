"""Latent diffusion through the ordinary trainer, and class subsets chosen by name."""

from __future__ import annotations

import math

import pytest
import torch

from viddiff_mini.config import TrainConfig, get_preset
from viddiff_mini.data.synthetic import CLASS_NAMES
from viddiff_mini.train import ShapesSource, StepBatches, load_run, sample_grid, train
from viddiff_mini.train_ae import get_ae_preset, train_autoencoder

CLASSES = ["MoveRightSquare", "MoveLeftSquare", "OrbitSquare"]


@pytest.fixture(scope="module")
def ae_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ae") / "ae"
    train_autoencoder(get_ae_preset("tiny"), out, progress=False, evaluate=False)
    return out


def latent_cfg(ae_run, **over):
    base = dict(latent=str(ae_run), classes=CLASSES, max_steps=4, log_every=1, ckpt_every=2,
                sample_n=0, batch_size=4)
    base.update(over)
    return get_preset("tiny", **base)


def test_latent_run_trains_on_latents_and_samples_pixels(ae_run, tmp_path):
    cfg = latent_cfg(ae_run)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 4
    model, diffusion, cfg2 = load_run(tmp_path / "run")
    assert cfg2.latent == str(ae_run) and cfg2.num_classes == 3
    assert model.in_channels == 4 if hasattr(model, "in_channels") else True
    x = sample_grid(model, diffusion, cfg2, "cpu", 2, seed=0, steps=2)
    assert tuple(x.shape) == (2, 3, 8, 16, 16) and x.abs().max() <= 1


def test_sample_grid_hooks_act_on_latents_and_sample_clips_on_either_space(ae_run, tmp_path):
    """sample_grid is sample_clips with hook_space="latent": same noise, same clips; its hook
    sees latent x0 (b, 4, t', h', w'), while sample_clips' default pixel hook sees pixels."""
    from viddiff_mini.latent import load_latent, sample_clips

    train(latent_cfg(ae_run), tmp_path / "run", progress=False)
    model, diffusion, cfg = load_run(tmp_path / "run")
    ae = load_latent(cfg)
    seen = {"latent": [], "pixel": []}

    def recorder(space):
        return lambda x0, t: seen[space].append(tuple(x0.shape)) or x0

    hook = {k: recorder(k) for k in seen}
    x = sample_grid(model, diffusion, cfg, "cpu", 2, seed=0, steps=2, x0_hook=hook["latent"])
    kw = dict(cond={"label": torch.tensor([0, 1])}, steps=2, sampler=cfg.sampler,
              guidance=cfg.sampling_guidance(), device="cpu")
    y = sample_clips(model, diffusion, (2, 3, 8, 16, 16), ae, hook["latent"], "latent",
                     generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(x, y)
    assert set(seen["latent"]) == {(2, *ae.latent_shape(8, 16))}
    sample_clips(model, diffusion, (2, 3, 8, 16, 16), ae, hook["pixel"],
                 generator=torch.Generator().manual_seed(0), **kw)
    assert set(seen["pixel"]) == {(2, 3, 8, 16, 16)}
    with pytest.raises(ValueError, match="hook_space: expected 'pixel' or 'latent'"):
        sample_clips(model, diffusion, (2, 3, 8, 16, 16), ae, hook["pixel"], "pixels", **kw)


def test_eval_of_a_latent_run_reports_the_autoencoders_ceiling(ae_run, tmp_path):
    """viddiff eval on a latent run adds the round trip of the real clips through its
    autoencoder (probe accuracy, colour drift, mask persistence): the most its decoded
    samples can score. A pixel run has no such keys."""
    from viddiff_mini.evaluate import evaluate_run, real_clips_of
    from viddiff_mini.latent import load_latent
    from viddiff_mini.metrics.objects import persistence_report

    train(latent_cfg(ae_run, max_steps=2), tmp_path / "run", progress=False)
    rep = evaluate_run(tmp_path / "run", n_per_class=2, steps=2, fvd=False, controls=False,
                       progress=False)
    assert 0 <= rep["ae_ceiling"] <= rep["ae_ceiling_in_run_classes"] <= 1
    _, _, cfg = load_run(tmp_path / "run")
    real, _ = real_clips_of(cfg.class_ids(), 2, cfg.frames, cfg.size, cfg.fold)
    ae = load_latent(cfg)
    want = persistence_report(ae.decode(ae.encode(real.float())).clamp(-1, 1))
    assert rep["ae_colour_drift"] == pytest.approx(want["colour_drift"], nan_ok=True)
    assert rep["ae_mask_persistence"] == pytest.approx(want["mask_persistence"], nan_ok=True)
    train(get_preset("tiny", classes=CLASSES, max_steps=2, sample_n=0, batch_size=4),
          tmp_path / "pixel", progress=False)
    pixel = evaluate_run(tmp_path / "pixel", n_per_class=1, steps=2, fvd=False,
                         controls=False, progress=False)
    assert not any(k.startswith("ae_") for k in pixel)


def test_latent_resume_is_exact(ae_run, tmp_path):
    from dataclasses import replace

    from viddiff_mini.utils import safe_torch_load
    cfg = latent_cfg(ae_run)
    train(cfg, tmp_path / "full", progress=False)
    train(replace(cfg, max_steps=2), tmp_path / "part", progress=False)
    train(cfg, tmp_path / "part", resume=True, progress=False)
    a = safe_torch_load(tmp_path / "full" / "checkpoint.pt")["model"]
    b = safe_torch_load(tmp_path / "part" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_autoencoder_of_another_clip_shape_is_refused_with_both_shapes(ae_run, tmp_path):
    cfg = latent_cfg(ae_run, frames=16, size=32)
    with pytest.raises(ValueError, match=r"trained on 8x16x16 clips but the run asks for "
                                         r"16x32x32"):
        train(cfg, tmp_path / "run", progress=False)


def test_model_channels_other_than_the_latent_are_refused(ae_run, tmp_path):
    cfg = latent_cfg(ae_run)
    cfg.model_kwargs["in_channels"] = 3
    with pytest.raises(ValueError, match=r"latent is \(4, 4, 8, 8\).*in_channels is 3"):
        train(cfg, tmp_path / "run", progress=False)


def test_latent_control_report_gives_the_autoencoders_floors(ae_run, tmp_path):
    """A latent model's control metrics are set beside the same measurements on the
    autoencoder's round trip of the real clips (the best its samples can do): caption
    checks, trajectory error and, on throw / bounce clips, gravity."""
    from viddiff_mini.metrics.control import evaluate_controls

    cfg = latent_cfg(ae_run, classes=["ThrowCircle", "MoveLeftSquare", "BounceSquare"],
                     max_steps=1, conditions=["text", "trajectory"])
    train(cfg, tmp_path / "run", progress=False)
    model, diffusion, cfg2 = load_run(tmp_path / "run")
    rep = evaluate_controls(model, diffusion, cfg2, n=3, steps=2, drag=False)
    assert rep["gravity_n"] == 2, rep
    # at this test's 8x16x16 the fits are rough; the point is that the floor is reported
    assert math.isfinite(rep["ae_gravity_rel_error"]) and rep["ae_gravity_rel_error"] >= 0
    assert rep["ae_gravity_rel_error"] != rep["real_gravity_rel_error"], "round trip, not raw"
    # this 8-step test autoencoder blurs objects away: its round trip scores below the raw clips
    assert 0 <= rep["ae_text_color_acc"] <= rep["real_text_color_acc"] == 1.0, rep
    assert rep["ae_trajectory_error_px"] > rep["real_trajectory_error_px"], rep


def test_pixel_aligned_controls_train_in_latent_space_folded_onto_its_grid(ae_run, tmp_path):
    """Trajectory maps and the first frame are built at the clip's 8x16x16 and folded
    space-to-depth onto the 4x8x8 latent grid; sampling and the control metrics decode."""
    from viddiff_mini.metrics.control import evaluate_controls

    cfg = latent_cfg(ae_run, conditions=["label", "trajectory", "first_frame"])
    train(cfg, tmp_path / "run", progress=False)
    model, diffusion, cfg2 = load_run(tmp_path / "run")
    assert model.concat_fold == (2, 2, 2)
    assert model.in_conv  # latent 4 channels + (6 trajectory + 4 first-frame) maps x 8
    first = next(m for m in model.in_conv.modules() if isinstance(m, torch.nn.Conv3d))
    assert first.in_channels == 4 + (6 + 4) * 8
    x = sample_grid(model, diffusion, cfg2, "cpu", 3, seed=0, steps=2)
    assert tuple(x.shape) == (3, 3, 8, 16, 16)
    rep = evaluate_controls(model, diffusion, cfg2, n=3, steps=2)
    assert {"trajectory_error_px", "first_frame_psnr_db", "motion_split_acc"} <= set(rep)
    assert 0 <= rep["motion_split_acc"] <= 1 and rep["motion_n"] == 6
    # the requests against the image (-v) are asked too, and the strict test covers all four
    assert 0 <= rep["motion_split_acc_against"] <= 1 and rep["motion_followed_n"] == 12
    assert 0 <= rep["motion_followed_acc"] <= 1
    assert {"against_object_request_object_err_px", "against_camera_request_camera_err_px"} <= set(rep)
    # and against it but within the frame (a -v request from a Move image leaves the frame)
    assert 0 <= rep["against_inframe_direction_acc"] <= 1
    assert 0 <= rep["against_inframe_speed_px"] <= rep["requested_speed_px"] + 1e-6
    # frame replacement runs through the decoder too (how close frame 0 gets is the
    # round trip's business: this 8-step test autoencoder reconstructs at ~13 dB)
    assert 0 < rep["first_frame_psnr_db_replaced"] < 100, rep
    # the yardstick: camera and object motion are told apart on the real clips
    assert rep["real_motion_split_acc"] == 1.0 and rep["real_trajectory_error_px"] < 1.0
    assert rep["real_motion_followed_acc"] >= 0.9, rep
    mg = evaluate_controls(model, diffusion, cfg2, n=3, steps=2, drag=False, motion_guidance=4.0)
    assert mg["motion_guidance"] == 4.0 and mg["motion_followed_n"] == 12
    assert mg["first_frame_psnr_db"] == rep["first_frame_psnr_db"], "only the motion report changes"
    # drag editing on a latent model: blended through the decoder, unedited pixels pasted
    assert rep["masked_psnr_db"] == float("inf") and rep["masked_psnr_decoded_db"] > 0


def test_control_samples_take_the_truth_of_the_runs_own_classes(ae_run):
    """Run label k of a run over ``classes`` means CLASSES[k]: the controls it samples with
    come from clips of that class (not data-set class k), with the run label kept."""
    from viddiff_mini.control.compose import truth_batch_for_run_labels

    cfg = latent_cfg(ae_run, conditions=["label", "text"])
    b = truth_batch_for_run_labels(cfg, torch.tensor([0, 2, 1]))
    assert b["label"].tolist() == [0, 2, 1]
    assert "right" in b["caption"][0] and "circles" in b["caption"][1], b["caption"]
    assert "left" in b["caption"][2]


def test_missing_autoencoders_are_refused_with_the_valid_names(ae_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrained autoencoders: msh-ae"):
        train(latent_cfg(tmp_path / "nowhere"), tmp_path / "b", progress=False)


def test_classes_by_name_set_num_classes_and_relabel_batches():
    cfg = get_preset("tiny", classes=CLASSES)
    assert cfg.num_classes == 3 and cfg.class_names() == CLASSES
    assert cfg.class_ids() == [CLASS_NAMES.index(c) for c in CLASSES]
    source = ShapesSource(cfg, torch.device("cpu"), truth=True)
    batch = next(source.batches(StepBatches(source.pool, 6, 0, 0, 1)))
    names = [CLASSES[k] for k in batch["label"].tolist()]
    assert names == batch["class_name"]          # run label k is CLASSES[k]


def test_virtual_pans_add_panned_copies_of_every_clip_to_the_pool():
    plain = ShapesSource(get_preset("tiny", classes=CLASSES), torch.device("cpu"), truth=True)
    src = ShapesSource(get_preset("tiny", classes=CLASSES, virtual_pans=2), torch.device("cpu"),
                       truth=True)
    assert src.pool == [i * 3 + c for i in plain.pool for c in range(3)]
    codes = [plain.pool[0] * 3 + c for c in range(3)]                 # one clip, three cameras
    batch = next(src.batches(StepBatches(codes, 3, 0, 0, 1)))
    from viddiff_mini.control.animate import motion_from_truth
    order = StepBatches(codes, 3, 0, 0, 1).global_indices(0)
    cam, _ = motion_from_truth(batch)
    for code, c in zip(order, cam[:, 0].tolist()):
        sign = {0: 0, 1: 1, 2: -1}[code % 3]      # a pan left moves the background right
        assert (c > 0.3) if sign > 0 else (c < -0.3) if sign < 0 else abs(c) < 1e-6, (code, c)
    assert len(set(batch["class_name"])) == 1 and batch["label"].unique().numel() == 1
    with pytest.raises(ValueError, match="virtual_pans"):
        get_preset("tiny", virtual_pans=-1)


def test_virtual_moves_add_moved_copies_of_straight_path_clips_only():
    from viddiff_mini.control.animate import motion_from_truth
    plain = ShapesSource(get_preset("tiny", classes=CLASSES), torch.device("cpu"), truth=True)
    src = ShapesSource(get_preset("tiny", classes=CLASSES, virtual_pans=1, virtual_moves=1),
                       torch.device("cpu"), truth=True)
    orbit = CLASS_NAMES.index("OrbitSquare")
    from viddiff_mini.data.synthetic import clip_index_table
    table = clip_index_table()
    # copies: 0 the clip, 1 panned, 2 moved; an orbit has no straight path: its "moved"
    # copy is the clip itself again (same code), so class balance is kept
    want = [i * 3 + (c if c < 2 or table[i][0] != orbit else 0) for i in plain.pool
            for c in range(3)]
    assert src.pool == want
    mover = next(i for i in plain.pool if table[i][0] != orbit)
    codes = [mover * 3 + c for c in range(3)]
    batch = next(src.batches([codes]))             # one step's batch: the three copies
    cam, obj = motion_from_truth(batch)
    got = {c: (cam[c], obj[c], batch["trajectories"][c, 0, 0]) for c in range(3)}
    assert got[0][0].abs().max() < 1e-6 and got[1][0].abs().max() > 0.3    # copy 1: a pan
    assert got[2][0].abs().max() < 1e-6                                     # copy 2: no pan,
    assert got[2][1].norm() < got[0][1].norm() + 1e-6                       # slower or equal,
    assert (got[2][2] - got[0][2]).norm() > 0.5                              # starts elsewhere
    with pytest.raises(ValueError, match="virtual_moves"):
        get_preset("tiny", virtual_moves=-1)


def test_init_starts_a_run_from_another_runs_weights_and_refuses_a_mismatch(ae_run, tmp_path):
    from viddiff_mini.train import init_weights
    train(latent_cfg(ae_run), tmp_path / "a", progress=False)
    donor, _, _ = load_run(tmp_path / "a")
    cfg = latent_cfg(ae_run, init=str(tmp_path / "a"), max_steps=1, lr=0.0, ema_decay=1.0)
    train(cfg, tmp_path / "b", progress=False)
    tuned, _, _ = load_run(tmp_path / "b")
    for (k, a), b in zip(donor.state_dict().items(), tuned.state_dict().values()):
        assert torch.equal(a, b), k        # lr 0 and a frozen EMA: the donor's weights exactly
    # a different model is refused with both sides named
    bad = latent_cfg(ae_run, init=str(tmp_path / "a"),
                     model_kwargs=dict(base_channels=8, channel_mults=(1, 2), attn_levels=(1,),
                                       heads=2))
    with pytest.raises(ValueError, match=r"init .*model_kwargs: this run .*base_channels.: 8"):
        init_weights(bad)
    # resume wins over init: the run continues from its own checkpoint
    train(cfg.__class__(**{**cfg.to_dict(), "max_steps": 2}), tmp_path / "b", resume=True,
          progress=False)


def test_latents_are_cached_per_clip_and_equal_encoding_the_batch(ae_run):
    from viddiff_mini.latent import load_latent
    cfg = latent_cfg(ae_run)
    ae = load_latent(cfg, "cpu")
    calls = []

    def encode(x):
        calls.append(x.shape[0])
        return ae.encode(x)

    source = ShapesSource(cfg, torch.device("cpu"), truth=True, encoder=encode)
    sampler = StepBatches(source.pool[:3], 4, 0, 0, 3)   # 12 draws from 3 clips
    batches = list(source.batches(sampler))
    assert calls == [1, 1, 1]                            # each clip encoded once, alone
    for b in batches:
        with torch.no_grad():
            direct = ae.encode(b["video"])
        torch.testing.assert_close(b["latent"], direct, rtol=1e-5, atol=1e-5)


def test_unknown_or_repeated_class_names_are_refused():
    with pytest.raises(ValueError, match=r"unknown class name\(s\) \['MoveSideways'\]"):
        TrainConfig(classes=["MoveSideways"])
    with pytest.raises(ValueError, match="each class once"):
        TrainConfig(classes=["OrbitSquare", "OrbitSquare"])


def test_object_loss_weights_pool_masks_to_the_latent_grid():
    from viddiff_mini.train import object_loss_weights
    masks = torch.zeros(1, 2, 4, 8, 8, dtype=torch.bool)
    masks[0, 1, 2, 5, 6] = True                     # one object pixel in frame 2
    w = object_loss_weights(masks, 9.0, (2, 4, 4))
    assert w.shape == (1, 1, 2, 4, 4)
    # frame 2 -> latent frame 1; pixel (5, 6) -> cell (2, 3), dilated to rows 1-3, cols 2-3
    expect = torch.ones(2, 4, 4)
    expect[1, 1:4, 2:4] = 10.0
    assert torch.equal(w[0, 0], expect)


def test_object_weight_trains_with_ground_truth_masks(ae_run, tmp_path):
    cfg = latent_cfg(ae_run, object_weight=9.0, max_steps=2)
    assert train(cfg, tmp_path / "run", progress=False)["step"] == 2


def test_object_weight_on_real_video_is_refused_with_the_flag_to_use(tmp_path):
    cfg = get_preset("tiny", data=f"folder:{tmp_path}", object_weight=9.0)
    with pytest.raises(ValueError, match="pass --object-weight 0"):
        train(cfg, tmp_path / "run", progress=False)


def test_pixel_hooks_and_composed_requests_work_on_a_latent_model(ae_run, tmp_path):
    """A pixel x0_hook runs on a latent model through decode -> hook -> encode: a hook that
    pins the whole clip to ``target`` makes the decoded sample the autoencoder's round trip
    of ``target``; ``ComposedControl.sample`` returns decoded pixels."""
    from viddiff_mini.control.compose import compose
    from viddiff_mini.latent import load_latent, pixel_hook

    cfg = latent_cfg(ae_run, conditions=["label", "text"])
    train(cfg, tmp_path / "run", progress=False)
    model, diffusion, cfg = load_run(tmp_path / "run")
    ae = load_latent(cfg)
    target = torch.rand(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    calls = []

    def pin(x0, t):
        calls.append(tuple(x0.shape))
        return target

    ask = compose({"text": "a red square moves left"}, cfg.conditions, 8, 16, batch_size=2)
    x = ask.sample(model, diffusion, steps=3, autoencoder=ae, x0_hook=pin,
                   generator=torch.Generator().manual_seed(0))
    assert tuple(x.shape) == (2, 3, 8, 16, 16) and calls[0] == (2, 3, 8, 16, 16)
    torch.testing.assert_close(x, ae.decode(ae.encode(target)).clamp(-1, 1), atol=1e-4, rtol=0)
    z = torch.randn(2, *ae.latent_shape(8, 16))
    torch.testing.assert_close(pixel_hook(pin, ae)(z, 0.5), ae.encode(target))


def test_animate_and_physics_comparison_accept_a_latent_model(ae_run, tmp_path):
    from viddiff_mini.control.animate import animate
    from viddiff_mini.control.physics import compare_guidance
    from viddiff_mini.latent import load_latent

    cfg = latent_cfg(ae_run)
    train(cfg, tmp_path / "run", progress=False)
    model, diffusion, cfg = load_run(tmp_path / "run")
    ae = load_latent(cfg)
    image = torch.zeros(2, 3, 16, 16)
    cond = {"label": torch.tensor([0, 1])}
    x = animate(model, diffusion, image, frames=8, cond=cond, mode="replace", steps=2,
                autoencoder=ae)
    assert tuple(x.shape) == (2, 3, 8, 16, 16)
    out = compare_guidance(model, diffusion, (2, 3, 8, 16, 16), cond=cond, steps=2,
                           autoencoder=ae)
    assert tuple(out["videos"][1].shape) == (2, 3, 8, 16, 16)
    with pytest.raises(ValueError, match="latent model.*mode='x0'"):
        compare_guidance(model, diffusion, (2, 3, 8, 16, 16), cond=cond, mode="xt",
                         autoencoder=ae)
