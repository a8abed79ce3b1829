"""One exception type whose message is a single actionable line.

`run.py` catches it and prints only the message (no traceback) and exits non-zero, so a user sees
what to fix instead of a stack. Set HYDRA_FULL_ERROR=1 / DFDISTILL_DEBUG=1 for the traceback.
"""

from __future__ import annotations


class DfdistillError(RuntimeError):
    """A user-facing error: bad config, missing data, corrupt cache, diverged loss."""


class ConfigError(DfdistillError):
    """The composed configuration is invalid (type, range or incompatible combination)."""


class DataError(DfdistillError):
    """A dataset is missing, unreadable, or does not fit the chosen backbone."""


class DivergenceError(DfdistillError):
    """A loss became NaN/Inf; the last good checkpoint is kept."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped the run after saving what it had; the message says how to continue.

    A KeyboardInterrupt subclass so that a sweep stops too and code catching Ctrl-C keeps working."""
