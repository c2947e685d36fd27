"""Tests for viddiff_mini.models.lightweight (section 11.2.6): UNet2D and VideoFromImage."""

import pytest
import torch

from viddiff_mini.models import build_model
from viddiff_mini.models.lightweight import MOTION_KINDS, UNet2D, VideoFromImage

SMALL = dict(base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2)


def _rand_init(m, std=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return m


def _x(b=2, t=4, seed=0):
    return torch.randn(b, 3, t, 8, 8, generator=torch.Generator().manual_seed(seed))


def _frame_by_frame(model, x, t, cond=None):
    return torch.stack([model(x[:, :, j], t, cond) for j in range(x.shape[2])], dim=2)


def test_unet2d_images_and_videos_frame_by_frame():
    m = _rand_init(UNet2D(**SMALL, num_classes=3))
    t, cond = torch.rand(2), {"label": torch.tensor([0, 2])}
    assert m(torch.randn(2, 3, 8, 8), t, cond).shape == (2, 3, 8, 8)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(m(x, t, cond), _frame_by_frame(m, x, t, cond))
    assert torch.count_nonzero(UNet2D(**SMALL)(x, t)) == 0  # zero-init output conv


@pytest.mark.parametrize("motion", ["shift", "attention", "conv", "none"])
def test_upgrade_at_identity_reproduces_the_image_model(motion):
    image = _rand_init(UNet2D(**SMALL, num_classes=3, context_dim=4))
    video = VideoFromImage.from_2d(image, motion=motion)
    x, t = _x(), torch.rand(2)
    cond = {"label": torch.tensor([1, 2]), "context": torch.randn(2, 2, 4)}
    with torch.no_grad():
        torch.testing.assert_close(video(x, t, cond), _frame_by_frame(image, x, t, cond))
    # the 2-D weights are a copy under "image.", the new modules live under "motion."
    assert set(video.image.state_dict()) == set(image.state_dict())
    assert all(k.startswith(("image.", "motion.")) for k in video.state_dict())


def test_plain_tsm_is_not_identity_but_free():
    image = _rand_init(UNet2D(**SMALL))
    video = VideoFromImage.from_2d(image, motion="tsm")
    x, t = _x(), torch.rand(2)
    with torch.no_grad():
        assert not torch.allclose(video(x, t), _frame_by_frame(image, x, t))
    assert video.motion_params() == 0


def test_motion_modules_mix_frames_once_trained():
    x, t = _x(b=1, t=5), torch.rand(1)
    y = x.clone()
    y[:, :, 0] += 1.0
    for motion, mixes in [("attention", True), ("shift", True), ("conv", True), ("none", False)]:
        video = _rand_init(VideoFromImage.from_2d(UNet2D(**SMALL), motion=motion))
        with torch.no_grad():
            d = (video(x, t) - video(y, t)).abs().amax(dim=(0, 1, 3, 4))
        assert (d[1:].max() > 0) == mixes, f"{motion}: frame 0 reaching later frames: {d}"


def test_freeze_2d_trains_only_motion_modules():
    image = _rand_init(UNet2D(**SMALL))
    video = VideoFromImage.from_2d(image, motion="attention", freeze_2d=True)
    assert all(not p.requires_grad for p in video.image.parameters())
    assert all(p.requires_grad for p in video.motion.parameters())
    assert video.num_params(trainable_only=True) == video.motion_params() > 0
    assert all(p.requires_grad for p in image.parameters())  # the original is untouched
    before = {k: v.clone() for k, v in video.state_dict().items()}
    opt = torch.optim.SGD([p for p in video.parameters() if p.requires_grad], lr=0.1)
    video.train()
    assert not video.image.training  # frozen image weights stay in eval mode
    video(_x(), torch.rand(2)).square().mean().backward()
    # the zero-init output projection gets a gradient; the frozen part none
    assert all(p.grad is None for p in video.image.parameters())
    opt.step()
    after = video.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("image."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("motion."))


def test_motion_levels_and_parameter_overhead():
    image = UNet2D(**SMALL)
    every = VideoFromImage.from_2d(image, motion="attention")
    n_stages = len(image.stages())
    assert len(every.motion) == n_stages == 2 + 1 + 4  # down, mid, up (num_res_blocks=1)
    deep = VideoFromImage.from_2d(image, motion="attention", motion_levels=(1,))
    assert 0 < deep.motion_params() < every.motion_params()
    gated = VideoFromImage.from_2d(image, motion="shift")
    assert gated.motion_params() == sum(2 * max(1, round(c / 8)) for c in image.stage_widths())


def test_registry_and_errors():
    assert isinstance(build_model("unet2d", **SMALL), UNet2D)
    m = build_model("lightweight", **SMALL, motion="attention", num_classes=4)
    assert isinstance(m, VideoFromImage) and m.image.num_classes == 4
    assert m(_x(), torch.rand(2), {"label": torch.tensor([0, 3])}).shape == (2, 3, 4, 8, 8)
    assert m(torch.randn(2, 3, 8, 8), torch.rand(2)).shape == (2, 3, 8, 8)  # image path
    with pytest.raises(ValueError, match="motion='lstm'"):
        VideoFromImage(UNet2D(**SMALL), motion="lstm")
    with pytest.raises(ValueError, match="UNet2D"):
        VideoFromImage.from_2d(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="heads=3"):
        UNet2D(**dict(SMALL, heads=3))
    with pytest.raises(ValueError, match="divisible by 2"):
        UNet2D(**SMALL, image_size=7)
    with pytest.raises(ValueError, match="motion_levels"):
        VideoFromImage(UNet2D(**SMALL), motion="conv", motion_levels=(5,))
    assert set(MOTION_KINDS) == {"shift", "tsm", "attention", "conv", "none"}


def test_checkpointing_same_grads():
    grads = []
    for ckpt in (False, True):
        m = _rand_init(build_model("lightweight", **SMALL, motion="attention", checkpoint=ckpt))
        m.train()
        m(_x(), torch.tensor([0.2, 0.8])).square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


def test_trains_with_train_py(tmp_path):
    from viddiff_mini.config import get_preset
    from viddiff_mini.train import load_run, train

    cfg = get_preset("tiny", model="lightweight", max_steps=2, log_every=1, ckpt_every=2,
                     sample_n=0, batch_size=2, frames=4,
                     model_kwargs=dict(SMALL, motion="attention"))
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["step"] == 2 and summary["final_loss"] == summary["final_loss"]
    model, _, _ = load_run(tmp_path / "run")
    assert isinstance(model, VideoFromImage)


def test_forward_features_include_motion():
    video = _rand_init(VideoFromImage.from_2d(UNet2D(**SMALL), motion="conv"))
    feats = video.forward_features(_x(b=1), torch.rand(1))
    assert [n for n, _ in feats][:2] == ["in_conv", "down.0"]
    assert all(f.ndim == 5 and f.shape[2] == 4 for _, f in feats)
