"""A generator used for understanding: the diffusion classifier (11.1.5's box on unifying
video understanding and generation).

A class-conditional diffusion model scores how well each label explains a clip: the label
under which the model denoises the clip best (lowest denoising loss, at the same times and
the same noise for every label) is its prediction — Bayes' rule with the diffusion loss as a
bound on -log p(x | label) (Li et al., "Your Diffusion Model is Secretly a Zero-Shot
Classifier", ICCV 2023; Clark & Jaini, "Text-to-Image Diffusion Models are Zero-Shot
Classifiers", NeurIPS 2023). No classifier is trained: the generator *is* the classifier.

Shapes: x0 (n, c, t, h, w) is what the model denoises (for a latent model: the autoencoder's
latent of the clip).
"""

from __future__ import annotations

import torch


@torch.no_grad()
def diffusion_classify(model, diffusion, x0: torch.Tensor, num_classes: int,
                       times=(0.2, 0.35, 0.5, 0.65, 0.8), seed: int = 0,
                       batch: int = 32, weights: torch.Tensor | None = None) -> dict:
    """Denoising loss of every clip under every label, at the same ``times`` and the same
    noise for all labels (the comparison is paired, so a few times suffice).

    ``weights`` (n, 1, t, h, w), optional: per-position loss weights, e.g. the object
    weighting a model was trained with (``train.object_loss_weights``).

    Returns ``losses`` (n, num_classes) (mean over the times), ``pred`` (n,) the label with
    the lowest loss, and ``margin`` (n,) the gap between the two lowest losses."""
    n = x0.shape[0]
    times = torch.as_tensor(times, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, len(times), *x0.shape[1:]), generator=g)       # (n, T, c, t, h, w)
    # one item per (clip, time, label): the same noise and time for every label
    clip = torch.arange(n).view(n, 1, 1).expand(n, len(times), num_classes).flatten()
    tix = torch.arange(len(times)).view(1, -1, 1).expand(n, len(times), num_classes).flatten()
    lab = torch.arange(num_classes).view(1, 1, -1).expand(n, len(times), num_classes).flatten()
    device = next(model.parameters()).device
    out = torch.empty(len(clip))
    model.eval()
    for i in range(0, len(clip), batch):
        c, ti, y = clip[i:i + batch], tix[i:i + batch], lab[i:i + batch]
        out[i:i + batch] = diffusion.loss(
            model, x0[c].to(device).float(), {"label": y.to(device)}, reduction="none",
            t=times[ti].to(device), noise=noise[c, ti].to(device),
            weights=None if weights is None else weights[c].to(device)).float().cpu()
    losses = out.view(n, len(times), num_classes).mean(1)
    two = losses.topk(2, dim=1, largest=False).values
    return {"losses": losses, "pred": losses.argmin(1), "margin": two[:, 1] - two[:, 0]}
