"""VideoAutoencoder: shapes, causality in time, standardised latents, clear errors."""

from __future__ import annotations

import pytest
import torch

from viddiff_mini.models.autoencoder import VideoAutoencoder


def small(**kw):
    base = dict(latent_channels=4, widths=(8, 16), spatial_down=1, temporal_down=1)
    base.update(kw)
    torch.manual_seed(0)
    return VideoAutoencoder(**base).eval()


def test_shapes_round_trip_and_latent_shape():
    ae = small()
    x = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert tuple(z.shape) == (2, 4, 4, 8, 8) == (2, *ae.latent_shape(8, 16))
    assert tuple(ae.decode(z).shape) == tuple(x.shape)
    # two spatial levels, one temporal: 4x per side, 2x in time
    ae2 = small(widths=(8, 16, 16), spatial_down=2, temporal_down=1)
    assert ae2.latent_shape(8, 16) == (4, 4, 4, 4)
    assert tuple(ae2.encode(x).shape) == (2, 4, 4, 4, 4)


@pytest.mark.parametrize("conv", ["2plus1d", "full3d"])
def test_causal_latent_frame_i_ignores_input_frames_after_2i_plus_1(conv):
    ae = small(conv=conv)
    x = torch.rand(1, 3, 8, 16, 16) * 2 - 1
    y = x.clone()
    y[:, :, 5:] = torch.rand_like(y[:, :, 5:])        # change frames 5..7 only
    zx, zy = ae.encode(x), ae.encode(y)
    # latent frame i sees input frames <= 2i+1: frames 0 and 1 (inputs 0..3) are untouched
    assert torch.equal(zx[:, :, :2], zy[:, :, :2])
    assert not torch.allclose(zx[:, :, 2:], zy[:, :, 2:])
    # decoder: output frame t sees latent frames <= t // 2
    vx, vy = ae.decode(zx), ae.decode(zy)
    assert torch.equal(vx[:, :, :4], vy[:, :, :4])


def test_non_causal_sees_the_future():
    ae = small(causal=False)
    x = torch.rand(1, 3, 8, 16, 16) * 2 - 1
    y = x.clone()
    y[:, :, 7] = 0.0
    assert not torch.allclose(ae.encode(x)[:, :, 0], ae.encode(y)[:, :, 0])


def test_fit_latent_stats_standardises_each_channel():
    ae = small()
    x = torch.rand(6, 3, 8, 16, 16) * 2 - 1
    ae.fit_latent_stats(x, chunk=4)
    z = ae.encode(x)
    assert torch.allclose(z.mean(dim=(0, 2, 3, 4)), torch.zeros(4), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3, 4)), torch.ones(4), atol=1e-3)
    # decode undoes the standardisation: decode(encode(x)) == forward(x)
    assert torch.allclose(ae.decode(z), ae(x), atol=1e-5)


def test_vae_variant_returns_mean_and_logvar():
    ae = small(kl_weight=1e-3)
    mean, logvar = ae.encode_raw(torch.zeros(1, 3, 8, 16, 16))
    assert mean.shape == logvar.shape == (1, 4, 4, 8, 8)


def test_bad_arguments_and_shapes_are_named():
    with pytest.raises(ValueError, match=r"widths: expected spatial_down \+ 1 = 2"):
        VideoAutoencoder(widths=(8, 16, 32), spatial_down=1)
    with pytest.raises(ValueError, match="temporal_down"):
        VideoAutoencoder(widths=(8, 16), spatial_down=1, temporal_down=2)
    with pytest.raises(ValueError, match="conv"):
        VideoAutoencoder(widths=(8, 16), conv="3d")
    with pytest.raises(ValueError, match="frames=7: must be divisible .* temporal factor 2"):
        small().encode(torch.zeros(1, 3, 7, 16, 16))
    with pytest.raises(ValueError, match="size=15"):
        small().latent_shape(8, 15)
