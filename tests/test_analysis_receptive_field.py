"""Tests for viddiff_mini.analysis.receptive_field (section 11.2.3)."""

import matplotlib
import pytest
import torch
from torch import nn

from viddiff_mini.analysis.receptive_field import (
    effective_span,
    feature_propagation,
    find_bottleneck,
    influence_range,
    layer_receptive_fields,
    model_features,
    plot_layer_profiles,
    propagation_leak,
    receptive_field_matrix,
    temporal_bottleneck,
    temporal_receptive_field,
)
from viddiff_mini.models import UNet2D, UNet3D, VideoDiT, VideoFromImage
from viddiff_mini.nn.propagation import build_temporal
from viddiff_mini.utils import perturb_weights

matplotlib.use("Agg")
SMALL = dict(base_channels=8, channel_mults=(1, 2), attn_levels=(1,), heads=2)


def _rand_init(m, std=0.2, seed=0, skip=None):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if skip is None or skip not in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return m


def _x(b=1, c=3, t=6, h=8, w=8, seed=0):
    return torch.randn(b, c, t, h, w, generator=torch.Generator().manual_seed(seed))


def _depthwise(kernel, c=2):
    k = len(kernel)
    conv = nn.Conv3d(c, c, (k, 1, 1), padding=(k // 2, 0, 0), groups=c, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(kernel).reshape(1, 1, k, 1, 1))
    return conv


def test_receptive_field_of_a_temporal_conv_hand_worked():
    conv = _depthwise([1.0, 2.0, 1.0])
    x = _x(c=2, t=6, h=3, w=3)
    prof = temporal_receptive_field(conv, x, 3, t=None)
    assert torch.allclose(prof, torch.tensor([0, 0, 0.25, 0.5, 0.25, 0]), atol=1e-5)
    assert influence_range(prof) == (2, 4) and effective_span(prof, 0.5) == 1
    assert effective_span(prof, 0.75) == 2 and effective_span(torch.zeros(3)) == 0
    assert influence_range(torch.zeros(3)) is None
    with pytest.raises(ValueError, match="frame=6"):
        temporal_receptive_field(conv, x, 6, t=None)


def test_per_frame_model_has_one_frame_receptive_field():
    m = _rand_init(UNet2D(**SMALL))  # the image model applied frame by frame
    rfs = layer_receptive_fields(m, _x(), frame=2)
    assert list(rfs)[0] == "in_conv" and list(rfs)[-1] == "output"
    for name, prof in rfs.items():
        assert torch.allclose(prof, torch.eye(6)[2], atol=1e-6), name


def test_clip_groupnorm_leaks_a_little_to_every_frame():
    # pseudo-3D convs (temporal conv = identity at init), spatial attention, no temporal
    # layer: no temporal mixing except through the clip-wide GroupNorm statistics
    m = _rand_init(UNet3D(**SMALL, conv="pseudo3d", attention="spatial", temporal="none"),
                   skip="temporal")
    prof = temporal_receptive_field(m, _x(), frame=2)
    assert prof[2] > 0.8 and effective_span(prof, 0.8) == 1
    assert (prof > 0).all()


def test_receptive_field_grows_with_depth_in_a_3d_unet():
    m = _rand_init(UNet3D(**SMALL, conv="full3d", attention="none", temporal="none"))
    rfs = layer_receptive_fields(m, _x(t=8), frame=4)
    spans = {n: influence_range(p) for n, p in rfs.items()}
    assert spans["in_conv"] == (3, 5)  # one 3x3x3 conv: one frame either side
    lo, hi = spans["mid"]
    assert hi - lo > 2  # deeper layers see further
    assert m.training  # restored


def test_dit_temporal_block_sees_the_whole_clip():
    m = _rand_init(VideoDiT(size={"depth": 2, "dim": 16, "heads": 2}, patch=(1, 4, 4)))
    rfs = layer_receptive_fields(m, _x(t=4), frame=1)
    assert torch.count_nonzero(rfs["blocks.0.spatial"]) == 1
    assert torch.count_nonzero(rfs["blocks.1.temporal"]) == 4


def test_feature_propagation_and_leak():
    image = _rand_init(UNet2D(**SMALL))
    per_frame = VideoFromImage.from_2d(image, motion="conv")  # identity motion at init
    x = _x()
    change = feature_propagation(per_frame, x, frame=3)
    for name, c in change.items():
        assert c.shape == (6,) and c[3] > 0 and propagation_leak(c, 3) == 0, name
    mixing = _rand_init(VideoFromImage.from_2d(image, motion="conv"))
    change = feature_propagation(mixing, x, frame=3)
    assert propagation_leak(change["output"], 3) > 0
    assert propagation_leak(torch.tensor([1.0, 0.0, 1.0]), 1) == 0.0  # no change at the frame
    assert propagation_leak(torch.tensor([0.5, 1.0, 0.5, 0.0]), 1) == pytest.approx(1 / 3)


def test_find_bottleneck_hand_worked():
    leak = {"a": 0.0, "b": 0.5, "c": 0.5, "d": 0.1, "e": 0.2}
    r = find_bottleneck(leak)
    assert r["layer"] == "d" and r["index"] == 3 and r["ratio"] == pytest.approx(0.2)
    assert r["collapsed"]
    r = find_bottleneck([("x", 0.1), ("y", 0.2), ("z", 0.3)])
    assert r["layer"] == "z" and r["ratio"] == pytest.approx(1.5) and not r["collapsed"]
    assert find_bottleneck({"only": 1.0})["layer"] is None


def test_temporal_bottleneck_end_to_end():
    m = _rand_init(UNet3D(**SMALL, conv="2plus1d", attention="divided", temporal="attention"))
    res = temporal_bottleneck(m, _x(t=4))
    assert set(res) == {"change", "leak", "bottleneck"}
    assert list(res["leak"]) == [n for n, _ in model_features(m, _x(t=4))]
    assert all(v >= 0 for v in res["leak"].values())
    assert res["bottleneck"]["layer"] in res["leak"]


def test_plot_layer_profiles():
    import matplotlib.pyplot as plt

    ax = plot_layer_profiles({"a": torch.tensor([0.0, 1.0, 0.0]), "b": torch.ones(2)},
                             title="rf", frame=1)
    assert ax.images
    plt.close("all")


def test_receptive_field_matrix_conv_band_hand_worked():
    conv = _depthwise([1.0, 2.0, 1.0])
    m = receptive_field_matrix(conv, _x(c=2, t=5, h=3, w=3))
    assert m.shape == (5, 5)
    assert torch.allclose(m[2], torch.tensor([0, 0.25, 0.5, 0.25, 0]), atol=1e-5)
    # the zero padding cuts the band at the clip's ends: row 0 is (2, 1) / 3
    assert torch.allclose(m[0], torch.tensor([2 / 3, 1 / 3, 0, 0, 0]), atol=1e-5)
    assert torch.allclose(m.sum(1), torch.ones(5), atol=1e-5)


def test_receptive_field_matrix_shapes_of_propagation_kinds():
    x = _x(c=8, t=6, h=4, w=4)
    fresh = receptive_field_matrix(build_temporal("recurrent", 8), x)
    assert torch.allclose(fresh, torch.eye(6), atol=1e-6)  # identity at initialisation
    rec = receptive_field_matrix(perturb_weights(build_temporal("recurrent", 8)), x)
    assert torch.all(rec.triu(1) == 0)                      # causal: no future frames
    assert torch.all(rec.tril(-1)[1:, 0] > 0)                # but every past frame
    bi = receptive_field_matrix(perturb_weights(build_temporal("bidirectional", 8)), x)
    assert torch.all(bi > 0)                                 # both directions


def test_perturb_weights_is_seeded_and_leaves_vectors_alone():
    a, b = nn.Linear(16, 4), nn.Linear(16, 4)
    b.load_state_dict(a.state_dict())
    w0, b0 = a.weight.detach().clone(), a.bias.detach().clone()
    perturb_weights(a, scale=2.0, seed=3)
    perturb_weights(b, scale=2.0, seed=3)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b0)
    delta = (a.weight - w0).detach()
    assert 0.25 < float(delta.std()) < 0.75  # 2 / sqrt(fan_in = 16) = 0.5
    assert perturb_weights(a, scale=0.0) is a and torch.equal(a.weight, b.weight)
    with pytest.raises(ValueError, match="scale"):
        perturb_weights(a, scale=-1)
