"""Where a committed result comes from: the header every file under results/ carries.

Why: a table is only worth committing if anyone can regenerate it and tell what produced it. Each
header names the exact command, the clean commit of the code that ran, the profile and the device,
with paths relative to the repository (a dataset by its name), never this machine's paths.
tests/unit/reporting/test_results_provenance.py reads these lines back.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Iterable, Optional

from dfdistill.engine.runtime import code_version

REPO = Path(__file__).resolve().parents[2]
# an absolute path of some machine: /work/..., /home/u/..., /tmp/x, C:\... (a '/' between words is no path)
# (plus wherever this checkout itself lives, e.g. a CI clone under /check/...)
MACHINE_PATH = re.compile(r"(?<![\w.~)\]/>-])(/(?:work|home|root|tmp|Users|mnt|scratch|data|opt|var|private)/[^\s`'\"|)]*"
                          rf"|{re.escape(str(REPO.parent))}/[^\s`'\"|)]*"
                          r"|[A-Za-z]:\\[^\s`'\"|]+)")
HEADER_KEYS = ("command", "commit", "profile", "device")


def commit() -> str:
    """`<short sha>`, `+dirty` when tracked code differs from it (changes under results/ do not count)."""
    return code_version()


def relative(path: str | os.PathLike) -> str:
    """A path as the repository sees it: relative to the repo root (../shared/... for the data beside
    it); a path elsewhere keeps only its last two parts, marked `<outside>`."""
    p = Path(os.path.abspath(os.path.expanduser(str(path))))
    try:
        return os.path.relpath(p, REPO) if p.is_relative_to(REPO.parent) else f"<outside>/{'/'.join(p.parts[-2:])}"
    except ValueError:
        return f"<outside>/{p.name}"


def relative_text(text: str) -> str:
    """Every machine path inside `text` made relative (for commands and notes)."""
    return MACHINE_PATH.sub(lambda m: relative(m.group(0)), text)


def this_command(argv: Optional[list[str]] = None, program: Optional[str] = None) -> str:
    """The command that is running, as one would retype it from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    prog = program or (relative(argv[0]) if argv else "python")
    return relative_text(" ".join(["python", prog, *(shlex.quote(a) for a in argv[1:])]))


def file_digest(path: str | os.PathLike, length: int = 12) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:length]


def header_lines(title: str, command: str, profile: Optional[str], device: Optional[str],
                 code: Optional[str] = None, extra: Iterable[tuple[str, str]] = ()) -> list[str]:
    """'# title' and the provenance bullet list every committed markdown file starts with."""
    lines = [f"# {title}", "", f"- **command**: `{relative_text(command)}`", f"- **commit**: {code or commit()}",
             f"- **profile**: {profile or 'n/a'}", f"- **device**: {device or 'n/a'}"]
    lines += [f"- **{k}**: {relative_text(str(v))}" for k, v in extra]
    return lines


def read_header(text: str) -> dict[str, str]:
    """The `- **key**: value` lines at the top of a markdown file (until the first section heading)."""
    out: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if line.startswith("## "):
            break
        m = re.match(r"- \*\*([^*]+)\*\*: (.*)", line)
        if m:
            out.setdefault(m.group(1).strip(), m.group(2).strip())
    return out


def without_commit(text: str) -> str:
    """A result without its builder's commit line: what a rebuild at a later commit must reproduce."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("- **commit**:"))
