"""The papers' numbers (results/paper/paper_tables.csv) exactly as the papers print them.

Why text: a table shows the paper's number next to ours; reading the CSV as text keeps "90",
"99.5" or "1.79" as printed (no float round-trips), and the renderer formats ours with the same
number of decimals. Some numbers live in the CSV's `note` (Table 3's gain, Table 6's ITE part,
Table 7's training hours); the parsers below read them, and fail loudly if a note changes shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
PAPER_CSV = REPO_ROOT / "results" / "paper" / "paper_tables.csv"

_GAIN = re.compile(r"gain vs full real data ([+-]\d+(?:\.\d+)?)")
_ITE = re.compile(r"ITE part (\d+(?:\.\d+)?) s/iter")
_HOURS = re.compile(r"train time (\d+(?:\.\d+)?)h( \(est\.\))?")
_PRINTED = re.compile(r"only two values for .*: printed '([^']+)'")
UNPLACED = "†"  # marks a paper text printed for a group of cells, not for this one (see `unplaced`)


@dataclass(frozen=True)
class PaperValue:
    """One paper number: value/std as floats (None where the paper prints none) and its text."""

    value: Optional[float]
    std: Optional[float]
    text: str

    @staticmethod
    def of(value: str, std: str = "", extra: str = "") -> "PaperValue":
        """From CSV strings: '28.3', '0.5' -> '28.3 ± 0.5'; extra is appended as printed."""
        v = value.strip() if isinstance(value, str) else ""
        s = std.strip() if isinstance(std, str) else ""
        text = (v + (f" ± {s}" if s else "")) if v else "—"
        if extra:
            text = f"{text} {extra}" if v else extra
        return PaperValue(float(v) if v else None, float(s) if s else None, text)


def load_paper(csv: str | Path = PAPER_CSV) -> pd.DataFrame:
    """Every column as text ('' where empty): value/std keep the paper's printed digits."""
    return pd.read_csv(csv, dtype=str, keep_default_na=False)


def table_rows(paper: pd.DataFrame, name: str, table: str) -> pd.DataFrame:
    return paper[(paper.paper == name) & (paper.table == table)]


def decimals(text: str) -> int:
    """Digits after the point of a printed number ('1.79' -> 2, '90' -> 0)."""
    t = text.strip()
    return len(t.split(".", 1)[1]) if "." in t else 0


def gain(note: str) -> Optional[str]:
    """BiLP Table 3's '(+1.7)': the gain over the full real data, as printed."""
    m = _GAIN.search(note)
    return m.group(1) if m else None


def ite_part(note: str) -> Optional[str]:
    """BiLP Table 6's 'ITE Computation (s/iter)' row, stored in the note of each setting."""
    m = _ITE.search(note)
    return m.group(1) if m else None


def unplaced(note: str) -> Optional[str]:
    """BiLP Table 2's IDC / IDM entries for CIFAR-10 IPC 50 and CIFAR-100: the garbled text prints two
    values for three cells ('80% 60%'), so no cell can be given a number; each shows what was printed."""
    m = _PRINTED.search(note)
    return m.group(1) if m else None


def train_hours(note: str) -> Optional[tuple[str, bool]]:
    """BiLP Table 7's training time: ('23.6', estimated?) or None."""
    m = _HOURS.search(note)
    return (m.group(1), bool(m.group(2))) if m else None


def as_float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan
