"""The `dfdistill` logger: one place our progress messages go.

Why: under `python run.py` Hydra's job logging (conf/config.yaml `hydra.job_logging`) sends these
records to the console *and* to `<run dir>/run.log`; outside Hydra (tests, scripts, notebooks)
a plain stdout handler (added at import by `ensure_console()`) shows the same messages.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("dfdistill")


class _CurrentStdout(logging.StreamHandler):
    """Writes to whatever `sys.stdout` is at emit time (pytest's capsys swaps it per test)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def ensure_console() -> None:
    """Give the logger a stdout handler unless a logging config (Hydra's) already gave it one."""
    if log.handlers:
        return
    handler = _CurrentStdout()
    handler.setFormatter(logging.Formatter("[dfdistill] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


ensure_console()  # at import: scripts and tests see messages; Hydra's job logging replaces this handler
