"""metrics/fvd.py: Fréchet distance, I3D loading, FVD-probe naming, the protocol, eval."""

import warnings

import pytest
import torch

from viddiff_mini.metrics.fvd import (
    I3D,
    PROTOCOLS,
    EvalProtocol,
    compute_fvd,
    evaluate_samples,
    frechet_distance,
    frechet_distance_from_features,
    fvd_name,
    gaussian_stats,
    get_protocol,
    inception_score,
    load_i3d,
    protocol_clips,
    reference_clips,
)
from viddiff_mini.metrics.probe import Probe, ProbeConfig


def _probe(frames=4, size=16, dim=8):
    torch.manual_seed(0)
    return Probe(ProbeConfig(num_classes=101, frames=frames, size=size, width=4,
                             feature_dim=dim)).eval()


def _random_spd(d, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


# --------------------------------------------------------------------------- Fréchet distance
def test_frechet_1d_and_diagonal_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    got = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]),
                           torch.tensor([3.0]), torch.tensor([[9.0]]))
    assert got == pytest.approx(4.0 + 1.0)
    v1, v2 = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.0])
    m1, m2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    want = float(((m1 - m2) ** 2).sum() + ((v1.sqrt() - v2.sqrt()) ** 2).sum())
    assert frechet_distance(m1, torch.diag(v1), m2, torch.diag(v2)) == pytest.approx(want)


def test_frechet_general_matches_eigenvalue_reference():
    d = 6
    s1, s2 = _random_spd(d, 1), _random_spd(d, 2)
    mu1, mu2 = torch.zeros(d), torch.ones(d) * 0.5
    # tr sqrt(S1 S2) = sum of sqrt of the (real, >= 0) eigenvalues of S1 S2
    ev = torch.linalg.eigvals(s1 @ s2).real.clamp_min(0)
    want = float(((mu1 - mu2) ** 2).sum() + s1.trace() + s2.trace() - 2 * ev.sqrt().sum())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(want, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)
    # rank-deficient covariances: no LinAlgError, still >= 0
    low = torch.zeros(d, d, dtype=torch.float64)
    low[0, 0] = 1.0
    assert frechet_distance(mu1, low, mu2, s2) >= 0
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu1, s1, mu2, s2[:3, :3])


def test_gaussian_stats_singular_covariance():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="singular"):
        mu, sigma = gaussian_stats(x)
    assert sigma.shape == (8, 8) and torch.linalg.eigvalsh(sigma).min() > 0   # eps * I added
    with pytest.raises(ValueError, match="singular"):
        gaussian_stats(x, on_singular="error")
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_stats(x[:1])
    bad = x.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        gaussian_stats(bad)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # enough samples: no warning
        gaussian_stats(torch.randn(20, 4, generator=torch.Generator().manual_seed(1)))


def test_frechet_from_features_mean_shift():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 3, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.0, 0.0],
                                                                                  dtype=torch.float64)
    assert frechet_distance_from_features(a, b) == pytest.approx(1.0, abs=0.1)
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError):
        frechet_distance_from_features(a, b[:, :2])


def test_inception_score_bounds():
    n, k = 40, 4
    assert inception_score(torch.zeros(n, k))[0] == pytest.approx(1.0)
    confident = torch.full((n, k), -30.0)
    confident[torch.arange(n), torch.arange(n) % k] = 30.0
    mean, std = inception_score(confident, splits=2)
    assert mean == pytest.approx(k, rel=1e-4) and std == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="splits"):
        inception_score(confident, splits=0)


# --------------------------------------------------------------------------- I3D
@pytest.fixture(scope="module")
def i3d():
    torch.manual_seed(0)
    return I3D(size=32).eval()


def test_i3d_shapes_and_names(i3d):
    x = torch.rand(2, 3, 8, 24, 24) * 2 - 1
    with torch.no_grad():
        assert i3d(x).shape == (2, 400) and i3d.features(x, "pool").shape == (2, 1024)
    keys = set(i3d.state_dict())
    for k in ("Conv3d_1a_7x7.conv3d.weight", "Conv3d_2c_3x3.bn.running_var",
              "Mixed_4f.b1b.conv3d.weight", "Mixed_5c.b3b.bn.bias", "logits.conv3d.bias"):
        assert k in keys
    n = sum(p.numel() for p in i3d.parameters())
    assert 12_000_000 < n < 13_500_000    # Inception-v1 I3D + a 400-way head
    assert fvd_name(i3d) == "fvd_i3d_random"
    with pytest.raises(ValueError, match="layer"):
        i3d.features(x, "mixed_4f")


def test_load_i3d_round_trip_and_bad_keys(i3d, tmp_path):
    state = {f"module.{k}": v for k, v in i3d.state_dict().items()
             if not k.endswith("num_batches_tracked")}     # an old DataParallel checkpoint
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(state, path)
    loaded = load_i3d(path)
    loaded.size = 32
    x = torch.rand(1, 3, 8, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(loaded(x), i3d(x), atol=1e-5)
    assert loaded.weights_loaded and fvd_name(loaded) == "fvd"
    bad = dict(state)
    bad["module.Mixed_3b.b9.conv3d.weight"] = bad.pop("module.Mixed_3b.b0.conv3d.weight")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(ValueError) as err:
        load_i3d(tmp_path / "bad.pt")
    msg = str(err.value)
    assert "missing keys: Mixed_3b.b0.conv3d.weight" in msg
    assert "unexpected keys: Mixed_3b.b9.conv3d.weight" in msg
    with pytest.raises(FileNotFoundError):
        load_i3d(tmp_path / "absent.pt")


def test_compute_fvd_names_never_call_the_probe_fvd():
    probe = _probe()
    g = torch.Generator().manual_seed(3)
    real = torch.rand(12, 3, 4, 16, 16, generator=g) * 2 - 1
    fake = torch.rand(12, 3, 4, 16, 16, generator=g) * 2 - 1
    r = compute_fvd(real, fake, features=probe)
    assert "fvd_probe" in r and "fvd" not in r and r["feature_dim"] == 8 and r["fvd_probe"] >= 0
    r = compute_fvd(real, fake, features=lambda v: v.mean(dim=(2, 3, 4)))
    assert "fvd_custom" in r
    with pytest.raises(ValueError, match="features"):
        compute_fvd(real, fake, features="inception")


# --------------------------------------------------------------------------- protocol, eval
def test_protocol_is_named_deterministic_and_from_the_test_split():
    from viddiff_mini.data import synthetic

    p = get_protocol("msh101-v1")
    assert p is PROTOCOLS["msh101-v1"] and (p.split, p.fold, p.n_per_class, p.frames, p.size) == \
        ("test", 1, 10, 16, 64)
    clips = protocol_clips("msh101-v1")
    assert len(clips) == 1010 and clips == protocol_clips(p)
    table = synthetic.clip_index_table()
    assert {table[i][1] for i, _ in clips} <= set(synthetic.TEST_GROUPS[1])
    assert all(table[i][0] == lab for i, lab in clips)
    sub = protocol_clips(p, classes=[5, 50])
    assert sub == [c for c in clips if c[1] in (5, 50)]
    with pytest.raises(ValueError, match="protocol"):
        get_protocol("msh101-v0")


def test_dense_protocol_extends_v1_for_reliable_few_class_distances():
    """20 clips per class, v1's 10 among them: an 8-class model gets 160 real clips, more
    than the probe's 128 feature dimensions, where v1 gives 80 (a singular covariance)."""
    eight = list(range(0, 80, 10))
    v1, dense = protocol_clips("msh101-v1", eight), protocol_clips("msh101-dense-v1", eight)
    assert len(v1) == 80 and len(dense) == 160 > 128
    assert set(v1) < set(dense)                     # same seed: v1's clips are the first 10
    assert all(sum(lab == k for _, lab in dense) == 20 for k in eight)
    rest = get_protocol("msh101-dense-v1")
    assert (rest.split, rest.fold, rest.seed, rest.frames, rest.size) == ("test", 1, 0, 16, 64)


def test_evaluate_samples_report_and_real_vs_real():
    tiny = EvalProtocol("tiny-test", n_per_class=6, frames=4, size=16)
    probe = _probe(dim=16)
    real = reference_clips(tiny, classes=[3, 40])
    labels = real["label"]
    with pytest.warns(UserWarning, match="singular"):   # 12 samples, 16-dim features: warn
        rep = evaluate_samples(real["video"], labels=labels, probe=probe, protocol=tiny,
                               temporal_n=2)
    assert rep["fvd_probe"] == pytest.approx(0.0, abs=1e-6)   # the reference set itself
    assert rep["fvd_protocol"] == "tiny-test" and rep["fvd_n_real"] == 12
    assert rep["fvd_classes"] == 2 and rep["temporal_n"] == 2
    assert rep["flicker"] == pytest.approx(rep["real_flicker"])
    assert 1.0 <= rep["is_probe"] <= 101
    assert "fvd" not in rep
    noise = torch.rand(12, 3, 8, 24, 24, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with pytest.warns(UserWarning):
        rep2 = evaluate_samples(noise, labels=labels, probe=probe, protocol=tiny, temporal=False)
    assert rep2["fvd_probe"] > 0 and "flicker" not in rep2
    with pytest.warns(UserWarning):
        rep3 = evaluate_samples(noise, labels=labels, probe=probe, protocol=tiny, frames=8,
                                size=24, temporal=False)
    assert rep3["fvd_protocol"] == "tiny-test@8x24"
    with pytest.raises(ValueError, match="labels"):
        evaluate_samples(noise, labels=labels[:3], probe=probe, protocol=tiny)
    with pytest.raises(ValueError, match=r"\(b, c, t, h, w\)"):
        evaluate_samples(noise[0], probe=probe, protocol=tiny)


def test_evaluate_py_calls_evaluate_samples_with_its_keywords():
    """evaluate.py: evaluate_samples(samples, labels=, probe=, frames=, size=)."""
    import inspect

    params = inspect.signature(evaluate_samples).parameters
    for name in ("labels", "probe", "frames", "size", "protocol"):
        assert name in params
