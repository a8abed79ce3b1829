"""Static class-balanced pruning + pipeline-level: the method sees the kept rows."""

import math

import pytest
import torch

from dfdistill.data.real import RealData
from dfdistill.pruning.static import class_balanced_keep, kept_count, stratum_rows


def _real():
    y = torch.tensor([0] * 7 + [1] * 10 + [2] * 3)
    return RealData(torch.randn(20, 1, 4, 4), y, 3, ["a", "b", "c"], (0.0,), (1.0,),
                    source_index=torch.arange(100, 120))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_keeps_ceil_per_class(ratio):
    real = _real()
    rows = class_balanced_keep(real, ratio, None, gen=torch.Generator().manual_seed(0))
    kept = real.subset(rows)
    assert kept.class_counts() == [math.ceil((1 - ratio) * n - 1e-9) for n in (7, 10, 3)]
    assert kept_count(10, 0.9) == 1 and kept_count(7, 0.5) == 4


def test_keeps_lowest_or_highest_scores():
    real = _real()
    scores = torch.rand(20)
    for keep in ("low", "high"):
        kept = class_balanced_keep(real, 0.5, scores, keep)
        for c, ix in enumerate(real.class_indices):
            k = set(kept.tolist()) & set(ix.tolist())
            s_in = scores[list(k)]
            s_out = scores[list(set(ix.tolist()) - k)]
            if len(s_out):
                assert (s_in.max() <= s_out.min()) if keep == "low" else (s_in.min() >= s_out.max())
    sub = real.subset(class_balanced_keep(real, 0.5, scores, "low"))
    assert set(sub.source_index.tolist()) <= set(range(100, 120))


def test_strata_partition_each_class():
    real = _real()
    scores = torch.rand(20)
    parts = [stratum_rows(real, scores, k, 2) for k in (1, 2)]
    assert sorted(torch.cat(parts).tolist()) == list(range(20))
    assert scores[parts[0]].mean() > scores[parts[1]].mean()


@pytest.mark.slow
@pytest.mark.parametrize("pruning", ["random", "loss"])
def test_pipeline_method_sees_kept_rows(compose_cfg, monkeypatch, pruning):
    """The RealData given to the method (and thus any experts stage) is exactly the kept subset."""
    from dfdistill.run import pipeline
    from dfdistill.methods import dm

    seen = {}
    orig = dm.DM.prepare

    def spy(self):
        seen["src"] = self.ctx.real.source_index.cpu().clone()
        return orig(self)

    monkeypatch.setattr(dm.DM, "prepare", spy)
    cfg = compose_cfg(["profile=smoke", "method=dm", "ipc=1", f"pruning={pruning}", "pruning.ratio=0.5",
                       "eval.compare_random=false"])
    rec = pipeline.run(cfg)
    assert rec["pruning_info"]["kept_source_index"] == seen["src"].tolist()
    assert rec["n_real_used"] == len(seen["src"]) == sum(rec["pruning_info"]["kept_per_class"])
    # the record says how the rows were chosen (random pruning has no score criterion)
    assert rec["pruning_info"]["criterion"] == ("random" if pruning == "random" else "loss")
