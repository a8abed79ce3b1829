"""Per-sample scoring: vmapped grad norms vs a loop, hardness, cached empirical loss artifact."""

import torch
import torch.nn.functional as F

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.data.real import RealData
from dfdistill.models import build_model
from dfdistill.scoring import ScoringConfig, cached_scores, hardness, per_sample_loss_and_grad_norm
from dfdistill.scoring.empirical import compute_scores


def _real(n_per=6, C=3):
    torch.manual_seed(0)
    y = torch.arange(C).repeat_interleave(n_per)
    return RealData(torch.randn(C * n_per, 1, 16, 16), y, C, [str(c) for c in range(C)], (0.0,), (1.0,))


def _factory(seed):
    torch.manual_seed(seed)
    return build_model("convnet", 1, 3, 16, width=8, depth=2)


def test_grad_norms_match_loop():
    real = _real()
    net = _factory(0)
    loss, gn = per_sample_loss_and_grad_norm(net, real.images, real.labels, chunk=5)
    for i in (0, 7, 17):
        li = F.cross_entropy(net(real.images[i : i + 1]), real.labels[i : i + 1])
        g = torch.autograd.grad(li, list(net.parameters()))
        assert torch.allclose(loss[i], li.detach(), atol=1e-5)
        assert torch.allclose(gn[i], torch.sqrt(sum((t ** 2).sum() for t in g)), rtol=1e-4)
    assert torch.allclose(hardness(loss, gn, 0.3), 0.3 * loss + 0.7 * gn)


def test_cached_scores_keyed_and_ordered(tmp_path):
    real = _real().subset(torch.tensor([17, 3, 5, 0, 9, 12]))
    cache = ArtifactCache(tmp_path)
    scfg = ScoringConfig(trials=2, epochs=[1, -1], train_epochs=2, batch_size=4)
    a = cached_scores(real, _factory, scfg, 0, cache, "toy", {"name": "convnet"})
    assert a["scores"].shape == (6,) and torch.equal(a["source_index"], real.source_index)
    assert len(list((tmp_path / "scores").glob("*.pt"))) == 1
    b = cached_scores(real, _factory, scfg, 0, cache, "toy", {"name": "convnet"})
    assert torch.equal(a["scores"], b["scores"])
    cached_scores(real, _factory, ScoringConfig(trials=1, epochs=[1], train_epochs=1, batch_size=4), 0, cache, "toy", {})
    assert len(list((tmp_path / "scores").glob("*.pt"))) == 2


def test_chunk_is_a_speed_knob_not_a_cache_key(tmp_path):
    """Chunk sizes give the same scores, so a changed chunk reuses the cached artifact."""
    real = _real()
    net = _factory(0)
    ref = per_sample_loss_and_grad_norm(net, real.images, real.labels, chunk=18)
    for chunk in (None, 1, 4):
        out = per_sample_loss_and_grad_norm(net, real.images, real.labels, chunk=chunk)
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(out, ref))
    cache = ArtifactCache(tmp_path)
    scfg = dict(criterion="hardness", trials=1, epochs=[1], train_epochs=1, batch_size=4)
    cached_scores(real, _factory, ScoringConfig(**scfg, chunk=3), 0, cache, "toy", {})
    cached_scores(real, _factory, ScoringConfig(**scfg), 0, cache, "toy", {})
    assert len(list((tmp_path / "scores").glob("*.pt"))) == 1


def test_epoch_range_reads_every_epoch_of_it():
    """BiLP Fig. 3's "mean loss of the first E epochs" as 'a-b' (short sweep dir names)."""
    import pytest

    from dfdistill.core.errors import ConfigError

    assert ScoringConfig(epochs=["1-5"]).readout_epochs() == [1, 2, 3, 4, 5]
    assert ScoringConfig(epochs=["1-3", 7, -1], train_epochs=9).readout_epochs() == [1, 2, 3, 7, 9]
    for bad in ("5-1", "0-3", "1-x"):
        with pytest.raises(ConfigError):
            ScoringConfig(epochs=[bad])
    real = _real()  # scores = mean over the range's read-outs: equal to listing the epochs
    a = compute_scores(real, _factory, ScoringConfig(trials=1, epochs=["1-2"], batch_size=4), seed=0)
    b = compute_scores(real, _factory, ScoringConfig(trials=1, epochs=[1, 2], batch_size=4), seed=0)
    assert torch.equal(a, b)
