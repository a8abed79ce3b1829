"""`hydra/sweeper=joblist`: launch an explicit list of jobs through any Hydra launcher.

Why: Hydra's basic sweeper only launches a full cartesian product, so a sweep relaunched through
joblib or SLURM would start every finished job again, and `run_table --add` job sets (extra
products next to the exp's grid) could not go through a launcher at all. run_table plans the jobs
(dfdistill.sweeps.plan), writes the pending ones, one JSON list of overrides per line, to a file,
and runs `run.py -m <any job's overrides> hydra/sweeper=joblist hydra.sweeper.jobs_file=<file>
hydra/launcher=<launcher>`. Each job is composed from its own overrides, so its directory is the
same `<sweep dir>/<override_dirname>` that `run.py -m` and run_table's local launcher use.
`params` is accepted and ignored: the exp files list their axes there for the basic sweeper.
"""


# No `from __future__ import annotations`: Hydra executes plugin modules before registering them in
# sys.modules, and dataclasses cannot resolve string annotations then.
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class JobListSweeperConf:
    _target_: str = "hydra_plugins.dfdistill_joblist.joblist_sweeper.JobListSweeper"
    jobs_file: str = "???"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None  # the exp's axes (basic sweeper); ignored here


ConfigStore.instance().store(group="hydra/sweeper", name="joblist", node=JobListSweeperConf, provider="dfdistill")


def read_jobs(path: str | Path) -> List[List[str]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class JobListSweeper(Sweeper):
    def __init__(self, jobs_file: str, max_batch_size: Optional[int] = None,
                 params: Optional[Dict[str, str]] = None) -> None:
        self.jobs_file = jobs_file
        self.max_batch_size = max_batch_size
        self.config: Optional[DictConfig] = None
        self.launcher: Optional[Launcher] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        jobs = read_jobs(self.jobs_file)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        n = self.max_batch_size or max(1, len(jobs))
        returns: List[Sequence[JobReturn]] = []
        for start in range(0, len(jobs), n):
            batch = jobs[start:start + n]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=start)
            for r in results:
                _ = r.return_value  # re-raises a failed job's exception, as the basic sweeper does
            returns.append(results)
        return returns
