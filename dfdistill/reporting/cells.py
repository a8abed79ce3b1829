"""Cell maths: what one table cell holds, as pure functions of the finished runs that feed it.

Why here: every number of every table is computed in this module (and nowhere else), from the
records of results.jsonl, so a cell can be checked against its source runs by a unit test.
Accuracies are returned in percent; records store fractions.

Accuracy cells pool every evaluated network of the cell's runs (mean ± population std, n networks),
the same formula the runs use for their own line (`reporting.results.mean_std`).

Max-ratio cells (BiLP Tables 1-2, Fig. 2) -- the rule, as read from the paper:
  BiLP §3.2: "We randomly drop some portions of the real data to find their maximum pruning ratio
  that could maintain the distillation accuracy." §4.1: "we compare the maximum pruning ratio that
  maintains the distillation performance [...] We take the mean and standard deviation of the
  accuracy of 5 random removal trials."
  The paper gives no tolerance, so the keep rule is a choice (`search.rule`, `KEEP_RULES`). Both
  sides are measured the same way: every evaluated network of every run with that config identity
  is pooled (the unpruned baseline's runs; a ratio's removal trials), giving mean ± std over
  networks and n. The default, `both_std`, reads "maintains" as "indistinguishable within the two
  spreads": a ratio keeps when its mean is at least the unpruned mean minus sqrt(std_u² + std_p²).
  The cell is the largest ratio tried that keeps (any value: 0.05, 0.83, 0.995 ... no fixed grid),
  reported in percent as the paper reports it; 0 when no ratio keeps. When no larger ratio was tried
  the cell is only a lower bound and prints as "≥ 99.5".
Best-ratio cells (BiLP Table 3): the best mean accuracy over the ratios tried (ratio 0 included, so
  the gain is never negative, as in the paper's "(+0.0)"), with its gain over the unpruned run.
Training time (speed-ups): seconds of the stages that BiLP's pruning changes --
  `TRAINING_STAGES` = scoring/selection ("pruning"), experts ("prepare") and the distillation loop
  (which contains the in-loop ITE) -- never data loading or evaluation. BiLP Table 7 counts
  `LARGE_SCALE_STAGES` (experts, distillation): its preemptive scoring is outside its times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

from dfdistill.reporting.results import mean_std

TRAINING_STAGES = ("pruning", "prepare", "distill")
# BiLP Table 7's "training time": experts and distillation only. Its pruning is preemptive (scores
# computed once before distillation; §4.1, §5.4: "can also be ignored or naturally embedded"), and
# its BiLP times cannot hold 5 x 100 ImageNet-1K scoring epochs (DM: 9.9 h with BiLP vs 22.4 h).
LARGE_SCALE_STAGES = ("prepare", "distill")
PAPER_WORDS = ('BiLP §4.1 "we compare the maximum pruning ratio that maintains the distillation performance [...] '
               'We take the mean and standard deviation of the accuracy of 5 random removal trials" (no tolerance '
               'given).')
KEEP_RULES = {  # search.rule -> how "maintains" is read; each side pools all evaluated networks of its runs
    "both_std": "a ratio keeps when its mean accuracy >= the unpruned mean - sqrt(std_unpruned^2 + std_ratio^2) "
                "(indistinguishable within both spreads)",
    "unpruned_std": "a ratio keeps when its mean accuracy >= the unpruned mean - the unpruned std",
    "se": "a ratio keeps when its mean accuracy >= the unpruned mean - sqrt(std_u^2/n_u + std_p^2/n_p) "
          "(within one standard error of the difference)",
}
DEFAULT_RULE = "both_std"


def rule_text(rule: str = DEFAULT_RULE) -> str:
    """The rule as the tables print it: the paper's words, then our reading."""
    check_rule(rule)
    return (f"{PAPER_WORDS} Rule `{rule}`: {KEEP_RULES[rule]}; every evaluated network of every run with the same "
            "config is pooled on both sides; the cell is the largest ratio tried that keeps (0 when none does), in "
            'percent, printed "≥ x" when no larger ratio was tried.')


def check_rule(rule: str) -> str:
    if rule not in KEEP_RULES:
        raise ValueError(f"search.rule must be one of {', '.join(KEEP_RULES)}, got {rule!r}")
    return rule


MAX_RATIO_RULE = rule_text(DEFAULT_RULE)
RATIO_DIGITS = 6  # ratios are grouped after rounding (0.83 read back from JSON is 0.83)


@dataclass(frozen=True)
class Stat:
    """One measured quantity: mean, std (None when the quantity has none) and how many values."""

    mean: float
    std: Optional[float]
    n: int

    @property
    def empty(self) -> bool:
        return self.n == 0 or math.isnan(self.mean)


EMPTY = Stat(math.nan, math.nan, 0)


def stat(values: Sequence[float]) -> Stat:
    """Mean ± population std of `values` (EMPTY when there are none)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return EMPTY
    m, s = mean_std(vals)
    return Stat(m, s, len(vals))


def acc_pct(rec: dict[str, Any]) -> list[float]:
    """The run's evaluated networks' accuracies in percent (its mean when the list is absent)."""
    accs = rec.get("accs")
    if accs:
        return [100.0 * float(a) for a in accs]
    return [100.0 * float(rec["acc_mean"])] if rec.get("acc_mean") is not None else []


def pooled_accuracy(records: Iterable[dict[str, Any]]) -> Stat:
    """Accuracy cell: every evaluated network of every run of the cell."""
    return stat([a for r in records for a in acc_pct(r)])


def random_real(records: Iterable[dict[str, Any]]) -> Stat:
    """The random real subset evaluated under the same protocol (`random_accs` the runs record)."""
    vals: list[float] = []
    for r in records:
        if r.get("random_accs"):
            vals += [100.0 * float(a) for a in r["random_accs"]]
        elif r.get("random_mean") is not None:
            vals.append(100.0 * float(r["random_mean"]))
    return stat(vals)


def over_trials(records: Sequence[dict[str, Any]]) -> Stat:
    """Mean ± std over runs, one run = one trial (its mean over networks); a single run: its networks."""
    if len(records) == 1:
        return stat(acc_pct(records[0]))
    means = [sum(a) / len(a) for a in (acc_pct(r) for r in records) if a]
    return stat(means)


def ratio_of(rec: dict[str, Any]) -> float:
    """The static pruning ratio of a run (0 for pruning=none)."""
    if rec.get("pruning", "none") == "none":
        return 0.0
    return round(float(rec.get("pruning_ratio") or 0.0), RATIO_DIGITS)


def by_ratio(records: Iterable[dict[str, Any]]) -> dict[float, list[dict[str, Any]]]:
    out: dict[float, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(ratio_of(r), []).append(r)
    return dict(sorted(out.items()))


def tolerance(acc: Stat, unpruned: Stat, rule: str = DEFAULT_RULE) -> float:
    """How far below the unpruned mean a ratio's mean may fall and still 'maintain' it (`KEEP_RULES`)."""
    su, sp = unpruned.std or 0.0, acc.std or 0.0
    if rule == "unpruned_std":
        return su
    if rule == "se":
        return math.sqrt(su * su / max(unpruned.n, 1) + sp * sp / max(acc.n, 1))
    check_rule(rule)
    return math.sqrt(su * su + sp * sp)


def keeps(acc: Stat, unpruned: Stat, rule: str = DEFAULT_RULE) -> bool:
    """Does a pruned accuracy 'maintain' the unpruned one under `rule`."""
    return not acc.empty and acc.mean >= unpruned.mean - tolerance(acc, unpruned, rule)


@dataclass(frozen=True)
class MaxRatio:
    """A max-ratio cell: `ratio` (fraction; None without an unpruned run) and what it came from."""

    ratio: Optional[float]
    unpruned: Stat
    per_ratio: dict[float, Stat] = field(default_factory=dict)  # ratio -> accuracy, all networks of its trials
    runs: dict[float, int] = field(default_factory=dict)  # ratio -> how many runs (removal trials) it pools
    rule: str = DEFAULT_RULE

    @property
    def percent(self) -> Optional[float]:
        return None if self.ratio is None else 100.0 * self.ratio

    @property
    def lower_bound(self) -> bool:
        """No ratio above the answer was tried: the true maximum may be higher ("≥ 99.5")."""
        return bool(self.ratio) and self.ratio >= max(self.per_ratio)

    def trials(self, ratio: float) -> int:
        return self.runs.get(ratio, 0)

    def note(self) -> str:
        """'unpruned 25.1 ± 0.4 (3); 50%: 25.0 ± 0.3 (5) keeps; 90%: 22.0 ± 1.0 (5) drops'."""
        if self.ratio is None:
            return "no unpruned (ratio 0) run"
        parts = [f"unpruned {_pm(self.unpruned)} ({self.runs.get(0.0, 0)} runs, {self.unpruned.n} nets)"]
        for r, s in self.per_ratio.items():
            if r > 0:
                verdict = "keeps" if keeps(s, self.unpruned, self.rule) else "drops"
                parts.append(f"{100 * r:g}%: {_pm(s)} ({self.runs.get(r, 0)} runs, {s.n} nets) {verdict}")
        return "; ".join(parts)


def distinct(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records once each: the same evaluation found twice (a run copied into another table's sweep
    dir, archived in runs.jsonl beside its run dir, or the same config reproduced bit for bit by the
    same code) adds no evidence and must not count twice; order-independent."""
    seen: dict[tuple, dict[str, Any]] = {}
    for i, r in enumerate(records):
        if r.get("config_key") is None:  # nothing identifies it: a record of its own
            seen[("anonymous", i)] = r
            continue
        key = (r.get("config_key"), r.get("code_version"), tuple(r.get("accs") or ()), r.get("acc_mean"))
        seen.setdefault(key, r)
    return list(seen.values())


def max_ratio(records: Sequence[dict[str, Any]], rule: str = DEFAULT_RULE) -> MaxRatio:
    """BiLP Tables 1-2 cell from the runs of ONE (method, dataset, IPC, selection) cell.

    `records` holds the unpruned runs (pruning=none or ratio 0) and the pruned runs at any ratios,
    one run per removal trial, any number of runs per config. See the module docstring for the rule.
    """
    groups = by_ratio(distinct(records))
    per = {r: pooled_accuracy(g) for r, g in groups.items()}
    runs = {r: len(g) for r, g in groups.items()}
    if 0.0 not in per:
        return MaxRatio(None, EMPTY, per, runs, rule)
    base = per[0.0]
    ok = [r for r, s in per.items() if r > 0 and keeps(s, base, rule)]
    return MaxRatio(max(ok, default=0.0), base, per, runs, rule)


@dataclass(frozen=True)
class BestRatio:
    """A best-accuracy cell (BiLP Table 3): the best ratio, its accuracy and the gain vs unpruned."""

    ratio: Optional[float]
    acc: Stat
    gain: Optional[float]


def best_ratio(records: Sequence[dict[str, Any]]) -> BestRatio:
    per = {r: over_trials(g) for r, g in by_ratio(records).items()}
    per = {r: s for r, s in per.items() if not s.empty}
    if not per:
        return BestRatio(None, EMPTY, None)
    r_best = max(per, key=lambda r: (per[r].mean, -r))
    gain = per[r_best].mean - per[0.0].mean if 0.0 in per else None
    return BestRatio(r_best, per[r_best], gain)


def training_seconds(rec: dict[str, Any], stages: Sequence[str] = TRAINING_STAGES) -> Optional[float]:
    """Seconds of the stages pruning changes (scores, experts, distillation loop); None if unrecorded."""
    st = rec.get("stage_seconds") or {}
    vals = [float(st[k]) for k in stages if k in st]
    return sum(vals) if vals else None


def training_hours(records: Iterable[dict[str, Any]], stages: Sequence[str] = TRAINING_STAGES) -> Stat:
    """Mean training time in hours (± std over runs when there are several, as the paper prints none)."""
    s = stat([t / 3600.0 for t in (training_seconds(r, stages) for r in records) if t is not None])
    return s if s.n > 1 else Stat(s.mean, None, s.n)


def field_stat(records: Iterable[dict[str, Any]], key: str) -> Stat:
    """Mean ± std over runs of a per-run number (sec_per_iter, ite_seconds_per_iter, ...)."""
    return stat([float(r[key]) for r in records if r.get(key) is not None])


def speedup(base: Stat, pruned: Stat) -> Optional[float]:
    """base time / pruned time (> 1 = faster), None when either is unmeasured."""
    if base.empty or pruned.empty or pruned.mean <= 0:
        return None
    return base.mean / pruned.mean


def _pm(s: Stat) -> str:
    if s.empty:
        return "—"
    return f"{s.mean:.1f}" + ("" if s.std is None else f" ± {s.std:.1f}")
