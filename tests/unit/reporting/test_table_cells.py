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


def test_verdict_pools_every_baseline_record_in_any_order() -> None:
    """Two unpruned records of one config (a rerun, or a copy in another table's sweep dir): the verdict
    rests on both, whichever is found last. With only the last record (the old `[-1:]`), the same
    evidence gave 30 % or 0 % depending on the order the files were read."""
    base_a = run([0.2400, 0.2403], pruning="none", config_key="k", code_version="a1")
    base_b = run([0.2390, 0.2420], pruning="none", config_key="k", code_version="b2")
    pruned = [run([a], ratio=0.3, config_key=f"p{i}") for i, a in enumerate((0.2392, 0.2396, 0.2395))]
    alone_a, alone_b = C.max_ratio([base_a, *pruned]), C.max_ratio([base_b, *pruned])
    assert alone_a.ratio != alone_b.ratio  # the evidence really is on the edge: one record alone flips it
    both = C.max_ratio([base_a, base_b, *pruned])
    assert both.ratio == C.max_ratio([*pruned, base_b, base_a]).ratio
    assert both.unpruned.n == 4 and both.trials(0.0) == 2
    assert C.max_ratio([base_a, base_a, *pruned]).unpruned.n == 2  # the same evaluation found twice counts once


def test_keep_rules_are_named_and_use_both_spreads() -> None:
    u, p = C.Stat(30.0, 0.6, 4), C.Stat(29.3, 0.8, 6)
    assert C.tolerance(p, u, "unpruned_std") == pytest.approx(0.6)
    assert C.tolerance(p, u, "both_std") == pytest.approx(1.0)
    assert C.tolerance(p, u, "se") == pytest.approx(math.sqrt(0.36 / 4 + 0.64 / 6))
    assert C.keeps(p, u, "both_std") and not C.keeps(p, u, "unpruned_std") and not C.keeps(p, u, "se")
    with pytest.raises(ValueError, match="search.rule must be one of"):
        C.tolerance(p, u, "loose")
    assert "both_std" in C.rule_text() and "maintains the distillation performance" in C.rule_text()


def test_top_rung_is_a_lower_bound() -> None:
    base = [run([0.30, 0.32], pruning="none")]
    top = C.max_ratio(base + [run([0.31], ratio=0.5), run([0.31], ratio=0.995)])
    assert top.ratio == pytest.approx(0.995) and top.lower_bound
    inner = C.max_ratio(base + [run([0.31], ratio=0.5), run([0.10], ratio=0.995)])
    assert inner.ratio == pytest.approx(0.5) and not inner.lower_bound
    assert not C.max_ratio(base + [run([0.10], ratio=0.5)]).lower_bound  # 0 % is no lower bound
