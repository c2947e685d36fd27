"""A small video autoencoder: the latent route of section 11.1.6 (route 3) made real.

Diffusion in pixel space spends most of its compute on pixels that carry no information
(flat backgrounds, the next frame that repeats this one). A video autoencoder compresses a
clip once; the diffusion model then works on the smaller latent, and the decoder turns its
samples back into pixels. Sora, Open-Sora, CogVideoX and HunyuanVideo all work this way,
with causal 3-D VAEs.

    ae = VideoAutoencoder(latent_channels=8, spatial_down=1, temporal_down=1)
    z = ae.encode(video)          # (b, 3, 16, 32, 32) -> (b, 8, 8, 16, 16), ~N(0, 1) per channel
    video_hat = ae.decode(z)      # (b, 8, 8, 16, 16) -> (b, 3, 16, 32, 32) in about [-1, 1]

Design choices (each a constructor argument):

* **Factorised (2+1)-D convs** (``conv="2plus1d"``): a 1x3x3 spatial conv then a 3x1x1
  temporal conv, 12 instead of 27 taps per channel pair; ``"full3d"`` for 3x3x3.
* **Causal in time** (``causal=True``): the temporal convs see only the current and earlier
  frames (padding with the first frame), so frame ``t`` of the latent depends on frames
  ``<= t`` of the clip, as in the causal 3-D VAEs of MAGVIT-v2 and CogVideoX: the first
  frame is encoded like an image, and a clip can be extended frame by frame.
* **No normalisation layers.** GroupNorm mixes an object's colour with the background's
  statistics; in a first try (FINDINGS) objects came back grey. Residual blocks with a
  scaled residual branch train stably at this size without it.
* **Plain AE + standardised latent** (``kl_weight=0``): the encoder's output is shifted and
  scaled per channel (``latent_mean``, ``latent_std`` buffers, fitted on training clips by
  :meth:`fit_latent_stats`) so the diffusion model sees zero-mean, unit-variance latents
  (the "scale factor" of Stable Diffusion, per channel). ``kl_weight > 0`` makes it a VAE
  (the encoder predicts a mean and log-variance; :meth:`encode` returns the mean).

Compression: ``2 ** spatial_down`` per side, ``2 ** temporal_down`` in time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CausalConv3d(nn.Module):
    """Conv3d with kernel ``(kt, kh, kw)``; time padded on the past side only (``causal``),
    by repeating the first frame, so output frame t sees input frames <= t.

    (b, c_in, t, h, w) -> (b, c_out, t // stride_t, h // stride_s, w // stride_s)
    """

    def __init__(self, c_in: int, c_out: int, kernel=(3, 3, 3), stride=(1, 1, 1),
                 causal: bool = True):
        super().__init__()
        kt, kh, kw = kernel
        self.causal, self.kt = causal, kt
        # a stride-2 causal conv sees frames (2i-kt+2 .. 2i+1): pad kt-stride at the front
        self.pad_t = (kt - stride[0]) if causal else (kt - 1) // 2
        self.conv = nn.Conv3d(c_in, c_out, kernel, stride=stride,
                              padding=(0 if causal else self.pad_t, kh // 2, kw // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.causal and self.pad_t > 0:
            first = x[:, :, :1].expand(-1, -1, self.pad_t, -1, -1)
            x = torch.cat([first, x], dim=2)
        return self.conv(x)


def video_conv(kind: str, c_in: int, c_out: int, causal: bool) -> nn.Module:
    """A 3x3x3 receptive field as one full 3-D conv or as spatial 1x3x3 then temporal 3x1x1."""
    if kind == "full3d":
        return CausalConv3d(c_in, c_out, (3, 3, 3), causal=causal)
    if kind == "2plus1d":
        return nn.Sequential(CausalConv3d(c_in, c_out, (1, 3, 3), causal=causal),
                             CausalConv3d(c_out, c_out, (3, 1, 1), causal=causal))
    raise ValueError(f"conv: expected 'full3d' or '2plus1d', got {kind!r}")


class AEBlock(nn.Module):
    """x + s * conv(silu(conv(silu(x)))): a residual block without normalisation.

    The residual branch is scaled by ``s = 0.5`` so activations do not grow with depth."""

    def __init__(self, c: int, conv: str, causal: bool):
        super().__init__()
        self.conv1 = video_conv(conv, c, c, causal)
        self.conv2 = video_conv(conv, c, c, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.5 * self.conv2(F.silu(self.conv1(F.silu(x))))


class Down(nn.Module):
    """Halve h and w (and t when ``temporal``) with a strided conv; change width c_in -> c_out."""

    def __init__(self, c_in: int, c_out: int, temporal: bool, causal: bool):
        super().__init__()
        st = 2 if temporal else 1
        self.conv = CausalConv3d(c_in, c_out, (3 if temporal else 1, 4, 4), stride=(st, 2, 2),
                                 causal=causal)
        # a 4x4 kernel with stride 2 needs padding 1 on each side: CausalConv3d pads kh//2=2
        self.conv.conv.padding = (self.conv.conv.padding[0], 1, 1)

    def forward(self, x):
        return self.conv(x)


class Up(nn.Module):
    """Double h and w (and t when ``temporal``) by nearest repeat, then a conv (no checkerboard)."""

    def __init__(self, c_in: int, c_out: int, temporal: bool, conv: str, causal: bool):
        super().__init__()
        self.scale = (2 if temporal else 1, 2, 2)
        self.conv = video_conv(conv, c_in, c_out, causal)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class VideoAutoencoder(nn.Module):
    """Video autoencoder: (b, 3, t, h, w) <-> (b, latent_channels, t/2^td, h/2^sd, w/2^sd).

    Args:
        in_channels: video channels.
        latent_channels: channels of the latent (C).
        widths: feature width per level; level i+1 is reached by one down-sampling, so
            ``len(widths) - 1 == spatial_down``.
        spatial_down: number of 2x spatial down-samplings (1 -> 2x per side).
        temporal_down: how many of them also halve time (<= spatial_down), the first ones.
        blocks: residual blocks per level (encoder and decoder alike).
        conv: ``"2plus1d"`` | ``"full3d"`` for every residual conv.
        causal: temporal convs see only past and current frames.
        kl_weight: 0 for a plain AE; > 0 for a VAE (the trainer reads it for the KL term).
    """

    def __init__(self, in_channels: int = 3, latent_channels: int = 8, widths=(32, 64),
                 spatial_down: int = 1, temporal_down: int = 1, blocks: int = 1,
                 conv: str = "2plus1d", causal: bool = True, kl_weight: float = 0.0):
        super().__init__()
        widths = tuple(widths)
        if len(widths) != spatial_down + 1:
            raise ValueError(f"widths: expected spatial_down + 1 = {spatial_down + 1} widths "
                             f"(one per level), got {widths}")
        if not 0 <= temporal_down <= spatial_down:
            raise ValueError(f"temporal_down: expected 0..spatial_down={spatial_down}, "
                             f"got {temporal_down}")
        self.config = dict(in_channels=in_channels, latent_channels=latent_channels,
                           widths=list(widths), spatial_down=spatial_down,
                           temporal_down=temporal_down, blocks=blocks, conv=conv,
                           causal=causal, kl_weight=kl_weight)
        self.latent_channels, self.kl_weight = latent_channels, kl_weight
        self.spatial_factor, self.temporal_factor = 2 ** spatial_down, 2 ** temporal_down
        levels = len(widths)

        enc: list[nn.Module] = [video_conv(conv, in_channels, widths[0], causal)]
        for i in range(levels):
            enc += [AEBlock(widths[i], conv, causal) for _ in range(blocks)]
            if i + 1 < levels:
                enc.append(Down(widths[i], widths[i + 1], temporal=i < temporal_down,
                                causal=causal))
        enc += [nn.SiLU(), CausalConv3d(widths[-1], latent_channels * (2 if kl_weight else 1),
                                        (1, 1, 1), causal=causal)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [video_conv(conv, latent_channels, widths[-1], causal)]
        for i in reversed(range(levels)):
            dec += [AEBlock(widths[i], conv, causal) for _ in range(blocks)]
            if i > 0:
                dec.append(Up(widths[i], widths[i - 1], temporal=i - 1 < temporal_down,
                              conv=conv, causal=causal))
        dec += [nn.SiLU(), CausalConv3d(widths[0], in_channels, (1, 3, 3), causal=causal)]
        self.decoder = nn.Sequential(*dec)

        # per-channel statistics of raw latents on training clips (fit_latent_stats)
        self.register_buffer("latent_mean", torch.zeros(latent_channels))
        self.register_buffer("latent_std", torch.ones(latent_channels))

    # ------------------------------------------------------------------ shapes
    def latent_shape(self, frames: int, size: int) -> tuple[int, int, int, int]:
        """(C, t', h', w') of the latent of a (3, frames, size, size) clip."""
        for name, value, factor in (("frames", frames, self.temporal_factor),
                                    ("size", size, self.spatial_factor)):
            if value % factor:
                raise ValueError(f"{name}={value}: must be divisible by the autoencoder's "
                                 f"{'temporal' if name == 'frames' else 'spatial'} factor "
                                 f"{factor}")
        s = size // self.spatial_factor
        return (self.latent_channels, frames // self.temporal_factor, s, s)

    # ------------------------------------------------------------------ encode / decode
    def _stats(self, z: torch.Tensor):
        shape = (1, -1, 1, 1, 1)
        return self.latent_mean.view(shape).to(z.dtype), self.latent_std.view(shape).to(z.dtype)

    def encode_raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean, logvar or None) of the unstandardised latent of ``x`` (b, 3, t, h, w)."""
        self.latent_shape(x.shape[2], x.shape[3])
        h = self.encoder(x)
        if self.kl_weight:
            mean, logvar = h.chunk(2, dim=1)
            return mean, logvar.clamp(-20, 10)
        return h, None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, t, h, w) in [-1, 1] -> standardised latent (b, C, t', h', w')."""
        mean, s = self._stats(x)
        return (self.encode_raw(x)[0] - mean) / s

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Standardised latent (b, C, t', h', w') -> video (b, 3, t, h, w)."""
        mean, s = self._stats(z)
        return self.decoder(z * s + mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` through the raw (unstandardised) latent."""
        return self.decode_raw(self.encode_raw(x)[0])

    @torch.no_grad()
    def fit_latent_stats(self, clips: torch.Tensor, chunk: int = 16) -> None:
        """Set ``latent_mean`` / ``latent_std`` per channel from clips (n, 3, t, h, w)."""
        zs = torch.cat([self.encode_raw(clips[i:i + chunk])[0] for i in
                        range(0, len(clips), chunk)])
        self.latent_mean.copy_(zs.mean(dim=(0, 2, 3, 4)))
        self.latent_std.copy_(zs.std(dim=(0, 2, 3, 4)).clamp_min(1e-4))
