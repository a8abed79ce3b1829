"""The `dfdistill` logger: one place our messages go.

Why: under `python run.py` Hydra's job logging (conf/config.yaml `hydra.job_logging`) sends these
records to the console *and* to `<run dir>/run.log`; outside Hydra (tests, scripts, notebooks)
a plain console handler (added at import by `ensure_console()`) shows the same messages.
Errors print as one `error: ...` line on stderr; everything else as `[dfdistill] ...` on stdout.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("dfdistill")


class BelowLevel(logging.Filter):
    """Passes records below `level` (keeps errors off the stdout handler; they go to stderr)."""

    def __init__(self, level: str | int = logging.ERROR) -> None:
        super().__init__()
        self.level = logging.getLevelName(level) if isinstance(level, str) else level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class _Current(logging.StreamHandler):
    """Writes to whatever `sys.<name>` is at emit time (pytest's capsys swaps it per test)."""

    def __init__(self, name: str) -> None:
        self._sysattr = name
        super().__init__(getattr(sys, name))

    @property  # type: ignore[override]
    def stream(self):
        return getattr(sys, self._sysattr)

    @stream.setter
    def stream(self, value) -> None:
        pass


def ensure_console() -> None:
    """Give the logger console handlers unless a logging config (Hydra's) already gave it some."""
    if log.handlers:
        return
    out = _Current("stdout")
    out.setFormatter(logging.Formatter("[dfdistill] %(message)s"))
    out.addFilter(BelowLevel(logging.ERROR))
    err = _Current("stderr")
    err.setLevel(logging.ERROR)
    err.setFormatter(logging.Formatter("error: %(message)s"))
    log.addHandler(out)
    log.addHandler(err)
    log.setLevel(logging.INFO)


ensure_console()  # at import: scripts and tests see messages; Hydra's job logging replaces these handlers


class _NoCudaRuntimeNotice(logging.Filter):
    """Drops torch's `No CUDA runtime is found, using CUDA_HOME=...`: torch.compile's C++ builder imports
    torch.utils.cpp_extension, which logs it on every CPU-only machine that has a CUDA toolkit installed
    (it is only logged when no CUDA device is usable, so it never hides anything a GPU run needs), and it
    lands in the middle of the progress bar."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No CUDA runtime is found")


logging.getLogger("torch.utils.cpp_extension").addFilter(_NoCudaRuntimeNotice())


class preserved_logging:
    """Restore the root and `dfdistill` loggers after an in-process Hydra run (tests, notebooks), whose
    job logging would otherwise leave handlers on the run's log file and on replaced console streams."""

    def __enter__(self) -> "preserved_logging":
        self._saved = {name: (lg.handlers[:], lg.level, lg.propagate)
                       for name, lg in (("root", logging.getLogger()), ("dfdistill", log))}
        return self

    def __exit__(self, *exc) -> None:
        for name, (handlers, level, propagate) in self._saved.items():
            lg = logging.getLogger() if name == "root" else log
            for h in lg.handlers[:]:
                if h not in handlers:
                    lg.removeHandler(h)
                    h.close()
            for h in handlers:
                if h not in lg.handlers:
                    lg.addHandler(h)
            lg.setLevel(level)
            lg.propagate = propagate
