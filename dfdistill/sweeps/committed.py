"""The tables committed under results/measured/, each with the one command that regenerates it.

Why a registry: a committed table is only trustworthy if one command reruns exactly what it rests on
and rebuilds it to the same bytes. Each entry says which exp it is, which `run_table.py` arguments
made it (profile, dataset, search budget) and which other committed tables' runs it reuses.
`make results-cpu TABLE=<name>` (scripts/results.py) then
  1. runs the table's sweep in results/sweeps/committed/<name> (git-ignored run dirs), where the
     committed evidence (results/measured/<name>/runs.jsonl and the reused tables' archives) counts
     as finished runs, so only what is missing is launched;
  2. archives every record the table rests on in results/measured/<name>/runs.jsonl (paths made
     relative, one line per evaluation, in a fixed order);
  3. rebuilds the table there from that archive alone, its header naming this command.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dfdistill.reporting.provenance import REPO

MEASURED = Path("results/measured")
SWEEPS = Path("results/sweeps/committed")

CPU_CIFAR10 = ("--profile", "cpu", "--no-extra", "dataset=cifar10_jpeg", "dataset.root=../shared/data/cifar10-jpeg",
               "logger=none", "eval.compare_random=false")
# one 2-core session's budget for BiLP's max-ratio search (the paper: 5 removal trials, every ratio it reports)
CPU_SEARCH = ("--search", "--ladder", "0.3,0.5,0.7,0.8,0.9,0.95,0.97,0.99,0.995", "--trials", "3")


@dataclass(frozen=True)
class Committed:
    exp: str
    args: tuple[str, ...]
    reuse: tuple[str, ...] = ()  # other committed tables whose runs count here (Fig. 2 from Tables 1-2)
    note: str = ""

    def sweep_dir(self, name: str) -> Path:
        return REPO / SWEEPS / name

    def out_dir(self, name: str) -> Path:
        return REPO / MEASURED / name


COMMITTED: dict[str, Committed] = {
    "bilp_tab1_cpu": Committed("bilp_tab1", CPU_CIFAR10 + CPU_SEARCH + ("method=dc,dm", "ipc=1"),
                               note="3 removal trials (the paper: 5) over a coarse ladder up to 99.5 %"),
    "bilp_tab2_cpu": Committed("bilp_tab2", CPU_CIFAR10 + CPU_SEARCH + ("method=dc,dm", "ipc=1"),
                               note="3 removal trials (the paper: 5) over a coarse ladder up to 99.5 %"),
    "bilp_fig2_cpu": Committed("bilp_fig2", CPU_CIFAR10 + CPU_SEARCH + ("method=dc,dm", "ipc=1"),
                               reuse=("bilp_tab1_cpu", "bilp_tab2_cpu"),
                               note="Tables 1-2's runs: both selections of each cell, same verdicts"),
}


def command(name: str) -> str:
    """What a committed table's header names: the make target that regenerates it."""
    return f"make results-cpu TABLE={name}"
