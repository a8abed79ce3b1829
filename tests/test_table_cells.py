"""Cell maths (dfdistill/reporting/cells.py): every cell equals a hand computation on its source runs."""

from __future__ import annotations

import math

import pytest

from dfdistill.reporting import cells as C


def run(accs, pruning="random", ratio=0.0, **kw):
    return {"method": "dc", "dataset": "cifar10", "ipc": 1, "pruning": pruning, "pruning_ratio": ratio,
            "accs": accs, "acc_mean": sum(accs) / len(accs), **kw}


def pstd(xs):
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def test_pooled_accuracy_is_every_network_of_every_run() -> None:
    s = C.pooled_accuracy([run([0.20, 0.22]), run([0.24])])
    assert s.n == 3 and s.mean == pytest.approx(22.0) and s.std == pytest.approx(pstd([20, 22, 24]))


def test_max_ratio_follows_the_stated_rule_at_any_ratio() -> None:
    """Unpruned over 3 trials; 0.05/0.83/0.995 keep (>= mean - std), 0.9 drops; the largest keeping wins."""
    unpruned = [run([a], pruning="none") for a in (0.30, 0.32, 0.31)]
    m0, s0 = 31.0, pstd([30, 32, 31])
    recs = unpruned + [run([0.309], ratio=0.05), run([0.311], ratio=0.05),
                       run([0.305], ratio=0.83), run([0.304], ratio=0.83),
                       run([0.28], ratio=0.9), run([0.29], ratio=0.9),
                       run([0.315, 0.295], ratio=0.995)]
    mr = C.max_ratio(recs)
    assert mr.unpruned.mean == pytest.approx(m0) and mr.unpruned.std == pytest.approx(s0) and mr.unpruned.n == 3
    assert mr.per_ratio[0.83].mean == pytest.approx(30.45) and mr.per_ratio[0.83].std == pytest.approx(0.05)
    assert mr.per_ratio[0.83].n == 2
    assert not C.keeps(mr.per_ratio[0.9], mr.unpruned)
    # a single run at a ratio: its spread is over its evaluated networks
    assert mr.per_ratio[0.995].mean == pytest.approx(30.5) and mr.per_ratio[0.995].std == pytest.approx(1.0)
    assert 30.5 >= m0 - s0 and mr.ratio == pytest.approx(0.995) and mr.percent == pytest.approx(99.5)
    assert "90%" in mr.note() and "drops" in mr.note() and "99.5%" in mr.note()


def test_max_ratio_boundary_and_missing_unpruned() -> None:
    base = [run([0.30, 0.32], pruning="none")]  # one unpruned run: 31 ± 1 over its networks
    assert C.max_ratio(base + [run([0.30], ratio=0.5)]).ratio == pytest.approx(0.5)  # exactly mean - std keeps
    assert C.max_ratio(base + [run([0.2999], ratio=0.5)]).ratio == 0.0  # nothing keeps -> 0 %
    assert C.max_ratio([run([0.3], ratio=0.5)]).ratio is None  # no unpruned run: no cell
    # pruning=<criterion> at ratio 0 is the unpruned run too
    assert C.max_ratio([run([0.30, 0.32], ratio=0.0), run([0.31], ratio=0.7)]).ratio == pytest.approx(0.7)


def test_best_ratio_and_gain() -> None:
    recs = [run([0.30], pruning="none"), run([0.33], ratio=0.5), run([0.31], ratio=0.9)]
    b = C.best_ratio(recs)
    assert b.ratio == 0.5 and b.acc.mean == pytest.approx(33.0) and b.gain == pytest.approx(3.0)
    assert C.best_ratio([run([0.30], pruning="none"), run([0.20], ratio=0.5)]).gain == 0.0  # ratio 0 is a candidate


def test_training_time_excludes_data_and_evaluation() -> None:
    r = {"stage_seconds": {"data": 50.0, "pruning": 2.0, "prepare": 3.0, "distill": 10.0, "eval": 900.0,
                           "eval_random": 300.0}}
    assert C.training_seconds(r) == 15.0 and C.training_seconds({}) is None
    h = C.training_hours([r, {"stage_seconds": {"distill": 3600.0 - 15.0 + 15.0}}])
    assert h.mean == pytest.approx((15.0 / 3600 + 1.0) / 2)
    assert C.speedup(C.Stat(30.0, 0, 1), C.Stat(10.0, 0, 1)) == pytest.approx(3.0)
    assert C.speedup(C.EMPTY, C.Stat(10.0, 0, 1)) is None


def test_random_real_pools_the_recorded_baseline_networks() -> None:
    s = C.random_real([{"random_accs": [0.1, 0.2]}, {"random_mean": 0.3}, {}])
    assert s.n == 3 and s.mean == pytest.approx(20.0)
    assert C.field_stat([{"x": 1.0}, {"x": 3.0}, {}], "x").mean == 2.0
