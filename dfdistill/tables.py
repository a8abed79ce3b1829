"""Compatibility alias: the table builder lives in dfdistill.reporting (collect, cells, layouts, grids,
render, build). Kept so `from dfdistill.tables import build_table, SPECS` (scripts/run_table.py, the
multirun callback, tests/unit/config/test_exp_configs.py) keeps working with the same signatures."""

from dfdistill.reporting.build import build_table  # noqa: F401
from dfdistill.reporting.layouts import SPECS  # noqa: F401
