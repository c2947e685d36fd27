import math

import pytest
import torch

from viddiff_mini.nn.embeddings import (
    MAX_TABLE_FRAMES,
    LabelEmbedding,
    TimestepMLP,
    VectorEmbedding,
    check_labels,
    sincos_1d,
    sincos_2d,
    table_rows,
    timestep_embedding,
)


def test_timestep_embedding_shape_and_values():
    t = torch.tensor([0.0, 0.5, 1.0])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8)
    # t = 0 -> cos = 1, sin = 0
    assert torch.allclose(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    # first frequency is 1: the scaled time 1000 * 0.5 = 500 appears as cos(500), sin(500)
    assert math.isclose(emb[1, 0].item(), math.cos(500.0), abs_tol=1e-4)
    assert math.isclose(emb[1, 4].item(), math.sin(500.0), abs_tol=1e-4)


def test_timestep_embedding_scalar_and_odd_dim():
    assert timestep_embedding(torch.tensor(0.3), 7).shape == (1, 7)
    with pytest.raises(ValueError, match=r"\(b,\)"):
        timestep_embedding(torch.zeros(2, 2), 8)


def test_timestep_embedding_distinguishes_close_times():
    a, b = timestep_embedding(torch.tensor([0.50, 0.51]), 64)
    assert (a - b).abs().max() > 0.1


def test_timestep_mlp():
    mlp = TimestepMLP(32, freq_dim=16)
    assert mlp(torch.rand(5)).shape == (5, 32)


def test_sincos():
    e = sincos_1d(6, 10)
    assert e.shape == (6, 10)
    assert torch.allclose(e[0], torch.tensor([0.0] * 5 + [1.0] * 5))
    e2 = sincos_2d(3, 4, 8)
    assert e2.shape == (12, 8)
    # tokens in the same row share the row half of the embedding
    assert torch.equal(e2[0, :4], e2[3, :4]) and not torch.equal(e2[0, 4:], e2[3, 4:])
    with pytest.raises(ValueError):
        sincos_2d(2, 2, 7)


def test_label_embedding_null_row():
    emb = LabelEmbedding(10, 6)
    labels = torch.tensor([1, 2, 3])
    keep = torch.tensor([True, False, True])
    out = emb(labels, keep)
    assert torch.equal(out[0], emb.table.weight[1])
    assert torch.equal(out[1], emb.table.weight[10])  # the null row
    assert torch.equal(emb(None, batch=2), emb.table.weight[[10, 10]])
    # a tensor is checked on its device (no host sync: RuntimeError on CPU, a device-side
    # assert on CUDA); python ints and check_labels (data loading) raise ValueError
    with pytest.raises(RuntimeError, match="num_classes=10"):
        emb(torch.tensor([10]))
    with pytest.raises(ValueError, match="num_classes=10"):
        emb([3, 10])
    with pytest.raises(ValueError, match=r"\[0, 9\].*got \[-1, 2\]"):
        check_labels(torch.tensor([-1, 2]), 10)
    check_labels([0, 9], 10)
    with pytest.raises(ValueError, match="label_keep"):
        emb(labels, torch.tensor([1, 0, 1]))


def test_vector_embedding_null():
    emb = VectorEmbedding(3, 8)
    with torch.no_grad():
        emb.null.fill_(0.25)
    v = torch.randn(2, 3)
    out = emb(v, torch.tensor([True, False]))
    assert torch.allclose(out[0], emb.mlp(v[:1])[0])
    assert torch.equal(out[1], torch.full((8,), 0.25))
    assert emb(None, batch=4).shape == (4, 8)
    with pytest.raises(ValueError, match="vector_dim=3"):
        emb(torch.randn(2, 4))


def test_table_rows_equal_fresh_tables():
    """Position tables kept as buffers give exactly the values computed per forward."""
    for dim in (7, 16, 48, 384):
        table = sincos_1d(MAX_TABLE_FRAMES, dim)
        for n in (1, 2, 8, 16, 64):
            assert torch.equal(table_rows(table, n, dim, table), sincos_1d(n, dim))
        assert torch.equal(table_rows(table, 70, dim, table), sincos_1d(70, dim))  # past the end
