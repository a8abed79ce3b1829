"""Image-folder decoding throughput and peak RSS per image, before (a checkout of the old code) and after.

Generates folders of JPEGs (default 20,000 at 32x32 and 20,000 at 64x64 cut from the CIFAR-10 JPEG
copy when it is there, else smooth random images; plus a smaller ImageNet-like set of 320x240
images resized to 64 on decode), then decodes each in a fresh process per (code, workers) so peak
RSS is clean, and times the split-cache write + read of a 64 px split. Writes a markdown table.

    python scripts/bench_decode.py --base /tmp/base            # /tmp/base: git worktree add /tmp/base 0eb41b8
    python scripts/bench_decode.py --base /tmp/base --workers 1 2 --out results/measured/decode_cpu.md

Images/s is wall-clock; CPU s is user+sys of the process and its workers (`resource.getrusage`), the
comparable figure when the machine is shared. RSS/img is the parent's peak RSS growth over the
decode divided by the image count (the output tensor alone is C*S*S bytes per image).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CIFAR_JPEG = (REPO / ".." / "shared" / "data" / "cifar10-jpeg").resolve()

# Runs in a fresh interpreter: argv = code_root, mode, json args.
CHILD = r"""
import json, os, resource, sys, time
root, mode, a = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, root)
os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch
torch.set_num_threads(1)
def usage():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime, s.ru_maxrss * 1024, c.ru_maxrss * 1024
def pss_kib():
    # PSS of this process and its children (shared pages split between them): their real memory use
    pids = [str(os.getpid())]
    for tid in os.listdir("/proc/self/task"):
        try:
            pids += open(f"/proc/self/task/{tid}/children").read().split()
        except OSError:
            pass
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/smaps_rollup"):
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total
if mode == "decode":
    import threading
    from dfdistill.data import image_folder as imf
    try:
        from dfdistill.data.decode import decode_files
        kw = {"workers": a["workers"]}
    except ImportError:  # the old code: sequential decode in image_folder
        decode_files, kw = imf.decode_files, {}
    files = sorted(str(p) for p in __import__("pathlib").Path(a["folder"]).rglob("*.jpg"))
    decode_files(files[:8], a["size"], 3, desc="warm", **kw)  # imports + decoder set-up outside the timing
    pss0, peak, stop = pss_kib(), [0], threading.Event()
    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], pss_kib())
    sampler = threading.Thread(target=sample, daemon=True)
    cpu0, rss0, _ = usage()
    t0 = time.perf_counter()
    sampler.start()
    out = decode_files(files, a["size"], 3, desc="decode", **kw)
    wall = time.perf_counter() - t0
    checksum = int(out[:, :, ::7, ::7].sum(dtype=torch.int64))  # touch the result
    stop.set(); sampler.join()
    peak[0] = max(peak[0], pss_kib())
    cpu1, rss1, _ = usage()
    walls, cpus = [wall], [cpu1 - cpu0]
    del out
    for _ in range(a["repeat"] - 1):  # timing only: the best of `repeat` runs (the machine is shared)
        c0, t0 = usage()[0], time.perf_counter()
        decode_files(files, a["size"], 3, desc="decode", **kw)
        walls.append(time.perf_counter() - t0)
        cpus.append(usage()[0] - c0)
    print(json.dumps({"n": len(files), "wall": min(walls), "cpu": min(cpus), "rss_growth": max(rss1 - rss0, 0),
                      "pss_growth": 1024 * max(peak[0] - pss0, 0), "checksum": checksum}))
else:  # cache_save / cache_load of a["n"] images at a["size"] px, each in its own process
    from pathlib import Path
    path = Path(a["path"])
    try:
        from dfdistill.data.split_cache import read_split as load, save_split
        save = lambda x, y: save_split(path, x, y, {"class_names": ["a"]})
    except ImportError:  # the old code: ArtifactCache (torch.save into a buffer + checksum header)
        from dfdistill.core.artifacts import save_tensor_file
        from dfdistill.core.artifacts import load_tensor_file as load
        save = lambda x, y: save_tensor_file(path, {"images": x, "labels": y, "class_names": ["a"]})
    if mode == "cache_save":
        x = torch.randint(0, 256, (a["n"], 3, a["size"], a["size"]), dtype=torch.uint8)
        y = torch.zeros(a["n"], dtype=torch.int64)
        _, rss0, _ = usage()
        t0 = time.perf_counter(); save(x, y); dt = time.perf_counter() - t0
    else:
        _, rss0, _ = usage()
        t0 = time.perf_counter(); got = load(path); dt = time.perf_counter() - t0
        path.unlink()
    _, rss1, _ = usage()
    print(json.dumps({"bytes": a["n"] * 3 * a["size"] ** 2, "seconds": dt, "rss_growth": max(rss1 - rss0, 0)}))
"""


def _cifar_files() -> list[Path]:
    return sorted((CIFAR_JPEG / "train").rglob("*.jpg")) if (CIFAR_JPEG / "train").is_dir() else []


def make_folder(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> Path:
    """n JPEGs of size (w, h) in 10 class folders: CIFAR-10 crops/mosaics when available, else smooth noise."""
    import numpy as np
    from PIL import Image

    done = folder / ".complete"
    if done.exists() and done.read_text() == str(n):
        return folder
    rng = np.random.default_rng(seed)
    src = _cifar_files()
    w, h = size
    for i in range(n):
        if src:
            tiles = [np.asarray(Image.open(src[int(rng.integers(len(src)))]).convert("RGB")) for _ in range(4)]
            mosaic = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)  # 64x64
            img = Image.fromarray(mosaic).resize((w, h), Image.BILINEAR) if (w, h) != (64, 64) else Image.fromarray(mosaic)
        else:
            small = rng.integers(0, 256, (max(h // 8, 2), max(w // 8, 2), 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        out = folder / f"c{i % 10}" / f"{i:06d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, quality=90)
    done.write_text(str(n))
    return folder


def child(code_root: Path, mode: str, args: dict) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(code_root)}
    res = subprocess.run([sys.executable, "-c", CHILD, str(code_root), mode, json.dumps(args)],
                         capture_output=True, text=True, env=env, cwd=str(code_root))
    if res.returncode != 0:
        raise RuntimeError(f"{mode} run failed under {code_root}:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="checkout of the old code (git worktree add /tmp/base 0eb41b8)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/dfdistill_decode_bench"))
    ap.add_argument("--n", type=int, default=20000, help="images per small-image folder (>= 20000 for the issue)")
    ap.add_argument("--n-large", type=int, default=4000, help="ImageNet-like 320x240 images (0 = skip)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=3, help="decode runs per cell; images/s and CPU s are the best")
    ap.add_argument("--cache-n", type=int, default=20000, help="images in the 64 px split for the cache write/read")
    ap.add_argument("--out", type=Path, default=REPO / "results" / "measured" / "decode_cpu.md")
    a = ap.parse_args()

    sets = [("32x32", make_folder(a.data / f"s32_{a.n}", a.n, (32, 32)), 32),
            ("64x64", make_folder(a.data / f"s64_{a.n}", a.n, (64, 64)), 64)]
    if a.n_large:
        sets.append(("320x240 -> 64", make_folder(a.data / f"l320_{a.n_large}", a.n_large, (320, 240)), 64))
    load0 = os.getloadavg()
    rows = []
    for label, folder, size in sets:
        runs = [("before (0eb41b8, sequential)", a.base, 1)] + [(f"after, {w} worker(s)", REPO, w) for w in a.workers]
        checks = set()
        for name, root, w in runs:
            r = child(root, "decode", {"folder": str(folder), "size": size, "workers": w, "repeat": a.repeat})
            checks.add(r["checksum"])
            rows.append((label, name, r))
            print(f"{label:>14} | {name:<30} | {r['n'] / r['wall']:8.0f} img/s | cpu {r['cpu']:.1f} s | "
                  f"rss/img {r['rss_growth'] / r['n']:.0f} B | pss/img {r['pss_growth'] / r['n']:.0f} B", flush=True)
        if len(checks) != 1:
            raise SystemExit(f"decoded pixels differ between runs on {label}: {checks}")
    cache_rows = []
    for name, root in (("before (torch.save + checksum header)", a.base), ("after (streamed split file)", REPO)):
        args = {"n": a.cache_n, "size": 64, "path": str(a.data / "cache_probe.bin")}
        sv, ld = child(root, "cache_save", args), child(root, "cache_load", args)
        cache_rows.append((name, sv, ld))
        print(f"cache {name}: save {sv['seconds']:.2f} s (+{sv['rss_growth'] / 2**20:.0f} MiB), "
              f"load {ld['seconds']:.2f} s (+{ld['rss_growth'] / 2**20:.0f} MiB)", flush=True)
    load1 = os.getloadavg()

    lines = [
        "# Image-folder decoding: before / after (CPU)",
        "",
        f"Command: `python scripts/bench_decode.py --base /tmp/base --n {a.n} --n-large {a.n_large} "
        f"--workers {' '.join(map(str, a.workers))} --repeat {a.repeat}` (before = the code at 0eb41b8, checked out in /tmp/base).",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s) visible, "
        f"torch {__import__('torch').__version__}; **shared with other agents' jobs** (1-min load average "
        f"{load0[0]:.1f} at the start, {load1[0]:.1f} at the end), so wall-clock images/s is noisy and the "
        "worker speed-up is bounded by the free cores; CPU seconds (user+sys, process + workers) are the comparable figure. "
        "images/s and CPU s: the best of the repeated runs; memory: the first run.",
        f"Images: JPEG quality 90, {'2x2 mosaics of CIFAR-10 JPEG train images' if _cifar_files() else 'smooth random images'}, "
        "10 class folders; every run decodes to the same pixels (checked).",
        "Memory per image: the parent's peak-RSS growth during the decode / images, and the peak PSS growth of "
        "the parent plus its workers (sampled every 50 ms; PSS splits the pages forked workers share with the "
        "parent, so it is their real use) / images. The uint8 output alone is 3*S*S B/img: 3072 at 32 px, "
        "12288 at 64 px; the rest is the file list, decoder state and, with workers, each worker's private pages.",
        "",
        "| images | code | n | images/s (wall) | CPU s | CPU µs/img | parent peak RSS growth / img (B) | parent+workers peak PSS growth / img (B) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, name, r in rows:
        lines.append(f"| {label} | {name} | {r['n']} | {r['n'] / r['wall']:.0f} | {r['cpu']:.2f} | "
                     f"{1e6 * r['cpu'] / r['n']:.0f} | {r['rss_growth'] / r['n']:.0f} | {r['pss_growth'] / r['n']:.0f} |")
    lines += [
        "",
        f"## Split cache: write + read of a {a.cache_n} x 3 x 64 x 64 uint8 split ({a.cache_n * 3 * 64 * 64 / 2**20:.0f} MiB)",
        "",
        "Save: a fresh process holding the split; RSS growth beyond it while saving. Load: a fresh process; "
        "RSS growth while loading (ideal: the split once).",
        "",
        "| code | save s | RSS growth while saving (MiB) | load s | RSS growth while loading (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, sv, ld in cache_rows:
        lines.append(f"| {name} | {sv['seconds']:.2f} | {sv['rss_growth'] / 2**20:.0f} | {ld['seconds']:.2f} | "
                     f"{ld['rss_growth'] / 2**20:.0f} |")
    lines.append("")
    lines.append(f"Measured {time.strftime('%Y-%m-%d %H:%M')}.")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
