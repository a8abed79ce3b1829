"""Issue-2 benchmark: every core method at IPC 1 and 10 on CIFAR-10 (JPEG), profile=cpu.

Runs each cell as its own `run.py` job in a deterministic folder (finished cells are skipped on a
rerun), then writes one markdown table: accuracy mean ± std over the eval networks, the random
real subset under the *same* protocol as that row, seconds per iteration, wall time, and the
exact overrides. Usage:

    DFDISTILL_CACHE=... python scripts/bench_methods.py --root ../shared/data/cifar10-jpeg
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["random", "herding", "kcenter", "dc", "dsa", "dm"]
# Per-cell extra overrides that keep the CPU run in minutes (documented in the table).
EXTRA = {
    ("dc", 10): ["method.iterations=20"],
    ("dsa", 10): ["method.iterations=10"],
    ("herding", None): ["method.pretrain_epochs=2"],
    ("kcenter", None): ["method.pretrain_epochs=2"],
}


def overrides(method: str, ipc: int, root: str) -> list[str]:
    extra = EXTRA.get((method, ipc), []) + EXTRA.get((method, None), [])
    return [f"method={method}", f"ipc={ipc}", "dataset=cifar10_jpeg", f"dataset.root={root}", "profile=cpu",
            "logger=none", "progress=false", *extra]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str((ROOT / ".." / "shared" / "data" / "cifar10-jpeg").resolve()))
    ap.add_argument("--ipcs", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--runs", default=str(ROOT / "results" / "sweeps" / "methods_cpu"))
    ap.add_argument("--out", default=str(ROOT / "results" / "measured" / "cpu_cifar10_methods.md"))
    args = ap.parse_args()
    if not Path(args.root).exists():
        sys.exit(f"CIFAR-10 JPEG folder not found at {args.root}; pass --root")
    rows = []
    for ipc in args.ipcs:
        for m in args.methods:
            over = overrides(m, ipc, args.root)
            run_dir = Path(args.runs) / f"{m}-ipc{ipc}"
            t0 = time.time()
            proc = subprocess.run([sys.executable, "run.py", *over, f"hydra.run.dir={run_dir}"], cwd=ROOT)
            if proc.returncode != 0:
                print(f"[bench_methods] {m} ipc {ipc} failed (exit {proc.returncode})")
                continue
            rec = json.loads((run_dir / "results.jsonl").read_text().splitlines()[-1])
            rows.append((rec, over, time.time() - t0))
            print(f"[bench_methods] {m} ipc {ipc}: {100 * rec['acc_mean']:.2f}")
    write_table(rows, Path(args.out), args.root)


def write_table(rows, out: Path, root: str) -> None:
    first = rows[0][0] if rows else {}
    prof = first.get("config", {}).get("profile", {})
    lines = [
        "# Core methods on CIFAR-10 (JPEG), profile=cpu",
        "",
        f"- dataset: `{root}` (JPEG re-encoded CIFAR-10; accuracies run a little below the binary release)",
        f"- device: {first.get('device_name', '?')}, torch {first.get('torch', '?')}, code {first.get('code_version', '?')}",
        f"- profile `cpu`: {json.dumps({k: v for k, v in prof.items() if v is not None})}",
        "- protocol: final test accuracy (10,000 test images) of fresh ConvNet-3 (width 32) networks trained on the set; "
        "`random (same protocol)` = a random real subset at the same IPC evaluated exactly like that row",
        "- machine: 2-core CPU shared with other jobs during the session, so wall times are upper bounds",
        "",
        "| method | IPC | acc % (mean ± std, n) | random (same protocol) % | Δ vs random | s/iter | iterations | wall s | overrides |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rec, over, wall in rows:
        acc = f"{100 * rec['acc_mean']:.2f} ± {100 * rec['acc_std']:.2f} ({rec['n_eval']})"
        if "random_mean" in rec:
            rnd = f"{100 * rec['random_mean']:.2f} ± {100 * rec['random_std']:.2f}"
            delta = f"{100 * (rec['acc_mean'] - rec['random_mean']):+.2f}"
        else:
            rnd, delta = "—", "—"
        spi = "—" if rec.get("sec_per_iter") is None else f"{rec['sec_per_iter']:.2f}"
        extra = " ".join(o for o in over if o.startswith("method.")) or "—"
        lines.append(f"| {rec['method']} | {rec['ipc']} | {acc} | {rnd} | {delta} | {spi} | {rec['iterations']} | "
                     f"{rec['wall_seconds']:.0f} | `{extra}` |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"[bench_methods] wrote {out}")


if __name__ == "__main__":
    main()
