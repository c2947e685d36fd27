"""control/animate.py: first-frame conditioning, frame replacement, motion types, fidelity."""

from __future__ import annotations

import math

import pytest
import torch

from viddiff_mini.control import animate as A
from viddiff_mini.control.toy import EmpiricalDenoiser
from viddiff_mini.data.synthetic import CLASS_NAMES, clip_index_table, render_batch, split_indices
from viddiff_mini.diffusion import Diffusion


@pytest.fixture(scope="module")
def clips():
    return render_batch(split_indices("train")[:6], frames=6, size=16, truth=True)


def test_first_frame_maps_layout(clips):
    img = clips["video"][:2, :, 0]
    m = A.first_frame_maps(img, 6)
    assert m.shape == (2, A.FIRST_FRAME_CHANNELS, 6, 16, 16)
    assert torch.equal(m[:, :3], img[:, :, None].expand(-1, -1, 6, -1, -1)), "image on every frame"
    assert (m[:, 3, 0] == 1).all() and (m[:, 3, 1:] == 0).all(), "indicator: frame 0 only"
    m0 = A.first_frame_maps(img, 6, repeat=False)
    assert torch.equal(m0[:, :3, 0], img) and (m0[:, :3, 1:] == 0).all()
    assert torch.equal(m0[:, 3], m[:, 3])
    assert A.first_frame_maps(img[0], 3).shape == (1, 4, 3, 16, 16), "a single image is a batch of 1"
    with pytest.raises(ValueError, match="image"):
        A.first_frame_maps(torch.zeros(2, 4, 16, 16), 3)
    with pytest.raises(TypeError):
        A.check_image([[0.0]])


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "euler"])
def test_replacement_gives_the_exact_first_frame(clips, sampler):
    d = Diffusion()
    model = EmpiricalDenoiser(clips["video"], d, temperature=5.0)
    img = clips["video"][3:5, :, 0].flip(-1)             # an image none of the clips starts with
    out = A.animate(model, d, img, frames=6, mode="replace", steps=5, sampler=sampler,
                    generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 6, 16, 16) and torch.equal(out[:, :, 0], img)
    fid = A.first_frame_fidelity(out, img)
    assert fid["psnr"] == math.inf and fid["ssim"] == pytest.approx(1.0)
    free = d.sample(model, (2, 3, 6, 16, 16), steps=5, generator=torch.Generator().manual_seed(0))
    assert A.first_frame_fidelity(free, img)["psnr"] < 40


def test_animate_modes_and_errors(clips):
    d = Diffusion()
    model = EmpiricalDenoiser(clips["video"], d)
    img = clips["video"][:1, :, 0]
    with pytest.raises(ValueError, match="concat"):
        A.animate(model, d, img, frames=6, mode="concat", steps=2)
    with pytest.raises(ValueError, match="mode"):
        A.animate(model, d, img, frames=6, mode="copy")
    calls = []
    hook = A.first_frame_hook(img, inner=lambda x0, t, x_t=None: calls.append(t) or x0)
    d.sample(model, (1, 3, 6, 16, 16), steps=3, x0_hook=hook)
    assert len(calls) == 3
    with pytest.raises(ValueError, match="spatial size"):
        A.first_frame_fidelity(clips["video"][:1], torch.zeros(1, 3, 8, 8))


def test_encode_motion_independent_parts():
    both = A.encode_motion(camera=(0.5, 0.0), obj=(0.0, -1.0))    # px/frame, scale 1
    assert both.tolist() == [0.5, 0.0, 1.0, 0.0, -1.0, 1.0]
    assert A.encode_motion(obj=(0.0, -4.0), scale=4.0)[3:].tolist() == [0.0, -1.0, 1.0]
    cam_only = A.encode_motion(camera=(2.0, 0.0))
    assert cam_only[3:].tolist() == [0.0, 0.0, 0.0], "object motion unspecified: flag 0"
    assert A.encode_motion().abs().sum() == 0
    with pytest.raises(ValueError, match="camera"):
        A.encode_motion(camera=(1.0,))
    with pytest.raises(ValueError, match="obj"):
        A.encode_motion(obj=(float("nan"), 0.0))


def test_motion_from_truth_and_measurement_agree():
    table = clip_index_table()
    want = ("PanLeftCircle", "PanRightSquare", "MoveRightCircle", "MoveUpSquare")
    idx = [next(i for i in split_indices("train") if CLASS_NAMES[table[i][0]] == n) for n in want]
    b = render_batch(idx, frames=8, size=32, truth=True)
    cam, obj = A.motion_from_truth(b)
    assert cam[0, 0] > 0.5 and cam[1, 0] < -0.5, "pan left: the background moves right on screen"
    assert cam[2:].abs().max() < 1e-6 and obj[:2].abs().max() < 1e-4, "pans: the object is still"
    assert obj[2, 0] > 0.5 and obj[3, 1] < -0.5
    for i in range(4):
        m = A.measure_motion(b["video"][i], b["masks"][i], b["flow"][i])
        assert m["camera"] == pytest.approx(tuple(cam[i].tolist()), abs=0.25), (want[i], m)
        assert m["object"] == pytest.approx(tuple(obj[i].tolist()), abs=0.25), (want[i], m)


def test_psnr_ssim_and_diversity():
    a = torch.zeros(1, 3, 8, 8)
    assert A.psnr(a, a) == math.inf and A.ssim_lite(a, a) == pytest.approx(1.0)
    assert A.psnr(a, a + 0.2) == pytest.approx(10 * math.log10(4 / 0.04), abs=1e-4)
    v = torch.randn(3, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert A.motion_diversity(v) > 0 and A.motion_diversity(v[:1].expand(3, -1, -1, -1, -1)) == 0
    with pytest.raises(ValueError, match="2 samples"):
        A.motion_diversity(v[:1])


def test_first_frame_maps_follow_the_requested_camera(clips):
    """camera=v: frame k of the repeated image is the image moved by k*v (what a pan shows);
    frame 0 and the indicator stay as without it; a still camera changes nothing."""
    img = clips["video"][:2, :, 0]
    plain = A.first_frame_maps(img, 6)
    assert torch.equal(A.first_frame_maps(img, 6, camera=torch.zeros(2, 2)), plain)
    m = A.first_frame_maps(img, 6, camera=torch.tensor([[1.0, 0.0], [0.0, -2.0]]))
    assert torch.equal(m[:, :3, 0], img) and torch.equal(m[:, 3], plain[:, 3])
    # whole-pixel shifts are exact away from the border that the pan uncovers
    assert torch.allclose(m[0, :3, 3, :, 3:], img[0, :, :, :-3], atol=1e-5), "3 px right by frame 3"
    assert torch.allclose(m[1, :3, 2, :-4], img[1, :, 4:], atol=1e-5), "4 px up by frame 2"
    assert torch.allclose(m[0, :3, 3, :, :3], img[0, :, :, :1].expand(-1, -1, 3), atol=1e-5), \
        "the uncovered edge repeats the border"
    with pytest.raises(ValueError, match="camera"):
        A.first_frame_maps(img, 6, camera=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="repeat"):
        A.first_frame_maps(img, 6, repeat=False, camera=torch.zeros(2, 2))


def test_encode_values_warps_by_the_camera_part_only_when_asked(clips):
    from viddiff_mini.control.compose import encode_values
    img = clips["video"][:3, :, 0]
    motion = torch.stack([A.encode_motion(camera=[1.0, 0.0]), A.encode_motion(obj=[1.0, 0.0]),
                          A.encode_motion()])
    warped, _ = encode_values({"first_frame": (img, motion)}, ["first_frame"], 3, 6, 16)
    plain, _ = encode_values({"first_frame": (img, motion)}, ["first_frame"], 3, 6, 16,
                             camera_warp=False)
    assert torch.equal(plain["concat"], A.first_frame_maps(img, 6))
    assert not torch.equal(warped["concat"][0], plain["concat"][0]), "camera request: warped"
    assert torch.equal(warped["concat"][1:], plain["concat"][1:]), \
        "object motion or no request: the image stays put"
