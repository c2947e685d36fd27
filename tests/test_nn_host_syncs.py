"""No host syncs, no host-to-device copies, no graph breaks in the training step (issue 13).

The step runs on the ``meta`` device: every op that would read a GPU tensor on the host or
ship a CPU tensor to the GPU shows up in :class:`HostSyncCounter` exactly as on a GPU, with
no GPU and no memory (so the gpu preset runs at its real size, batch 64).
"""

import pytest
import torch

from viddiff_mini.benchmarks.syncs import HostSyncCounter
from viddiff_mini.benchmarks.train_step import bench_config, build_train_step

META = torch.device("meta")


def test_counter_sees_syncs_and_copies():
    x = torch.ones(3, device=META)
    with HostSyncCounter() as c:
        x.sum().item()
        bool(x.max() > 0)
        torch.arange(3).to(META)
        torch.ones(2).sum().item()  # a CPU read is not a device sync
    assert c.syncs["aten._local_scalar_dense.default"] == 2
    assert sum(c.h2d.values()) == 1 and c.total == 3


@pytest.mark.parametrize("preset,model", [("tiny", "unet3d"), ("tiny", "dit"),
                                          ("gpu", "unet3d"), ("gpu", "dit")])
def test_training_step_has_no_host_sync_or_copy(preset, model):
    """Forward (bf16 autocast on CUDA), loss, backward, clipping, AdamW, EMA: zero of either."""
    cfg = bench_config(preset, model=model)
    parts = build_train_step(cfg, META)
    parts["step"]()  # the first step creates the optimizer state
    with HostSyncCounter() as c:
        parts["step"]()
        parts["step"]()
    assert c.total == 0, c.report()


def test_renderer_copies_once_per_chunk_and_never_syncs():
    from viddiff_mini.data import synthetic

    idx = list(range(0, synthetic.NUM_CLIPS, 208))[:64]  # all kinds of motion and camera
    for truth in (False, True):
        with HostSyncCounter() as c:
            out = synthetic.render_batch(idx, frames=16, size=64, device=META, truth=truth)
        assert out["video"].shape == (64, 3, 16, 64, 64) and out["label"].device.type == "meta"
        assert not c.syncs, c.report()
        assert sum(c.h2d.values()) == 2, c.report()  # one packed copy per 32-clip chunk


@pytest.mark.parametrize("model", ["unet3d", "dit"])
def test_dynamo_finds_one_graph(model):
    """``torch._dynamo.explain``: the whole forward is one graph (no break, no host sync)."""
    from viddiff_mini.train import build_model_for

    cfg = bench_config("tiny", model=model)
    if model == "dit":
        cfg.model_kwargs = {"size": "tiny"}
    net = build_model_for(cfg)
    x = torch.randn(2, 3, cfg.frames, cfg.size, cfg.size)
    cond = {"label": torch.tensor([0, 1]), "label_keep": torch.tensor([True, False])}
    torch._dynamo.reset()
    explained = torch._dynamo.explain(net)(x, torch.rand(2), cond)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, \
        [r.reason for r in explained.break_reasons]
