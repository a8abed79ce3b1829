"""Parallel image decoding (deterministic rows, one-line errors from workers) and the streaming split cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfdistill.data.decode import decode_files, decode_one
from dfdistill.data.split_cache import load_cached_split, read_split, save_split
from dfdistill.core.errors import DataError

from conftest import ROOT as REPO
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # decode_one called directly


def make_files(folder: Path, n: int = 37, size=(9, 7)) -> list[str]:
    """n images with distinct content (a gradient offset by i), alternating JPEG and PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    w, h = size
    for i in range(n):
        arr = ((np.arange(h * w * 3).reshape(h, w, 3) * 3 + 11 * i) % 256).astype(np.uint8)
        path = folder / f"{i:04d}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(arr).save(path)
        files.append(str(path))
    return files


def test_parallel_decode_equals_sequential_row_for_row(tmp_path):
    files = make_files(tmp_path / "img")
    seq = decode_files(files, 8, 3, workers=1)
    par = decode_files(files, 8, 3, workers=3, chunk=4)  # 9 chunks over 3 processes, finishing out of order
    assert seq.shape == (37, 3, 8, 8) and seq.dtype == torch.uint8
    assert torch.equal(seq, par)
    for i in (0, 5, 36):
        assert torch.equal(par[i], decode_one(files[i], 8, 3))
    native = decode_files(files, None, 1, workers=2, chunk=5)  # native size, grayscale
    assert native.shape == (37, 1, 7, 9) and torch.equal(native, decode_files(files, None, 1, workers=1))


def test_worker_errors_arrive_as_one_line_data_errors(tmp_path):
    files = make_files(tmp_path / "img", n=12)
    bad = tmp_path / "img" / "0009.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match="cannot decode image .*0009.jpg"):
        decode_files(files, 8, 3, workers=2, chunk=2)
    files = make_files(tmp_path / "img2", n=12)
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(files[7])
    with pytest.raises(DataError, match="image_size"):
        decode_files(files, None, 3, workers=2, chunk=2)


# ------------------------------------------------------------------------------------------------ cache


def test_split_cache_round_trip_and_corruption(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 3, 4, 4), generator=g, dtype=torch.uint8)
    labels = torch.arange(50) % 7
    path = tmp_path / "d" / "k.split"
    save_split(path, images, labels, {"class_names": ["a"] * 7})
    x, y, meta = read_split(path)
    assert torch.equal(x, images) and torch.equal(y, labels) and meta["class_names"] == ["a"] * 7
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the pixels
    path.write_bytes(bytes(raw))
    assert load_cached_split(path) is None and not path.exists()
    assert "checksum mismatch" in capsys.readouterr().out
    save_split(path, images, labels, {})
    path.write_bytes(path.read_bytes()[:-100])
    assert load_cached_split(path) is None and "rebuilding" in capsys.readouterr().out


_RSS_PROBE = r"""
import json, resource, sys, torch
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from dfdistill.data.split_cache import read_split, save_split
path, mode, mb = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
if mode == "save":
    x = torch.ones(mb << 20, dtype=torch.uint8).view(-1, 3, 32, 32)
    y = torch.zeros(x.shape[0], dtype=torch.int64)
    before = rss()
    save_split(path, x, y, {})
else:
    before = rss()
    x, y, _ = read_split(path)
print(json.dumps({"delta": rss() - before}))
"""


def _probe(tmp_path: Path, mode: str, mb: int) -> int:
    out = subprocess.run([sys.executable, "-c", _RSS_PROBE, str(REPO), str(tmp_path / "big.split"), mode, str(mb)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["delta"]


def test_split_cache_streams_without_extra_copies(tmp_path):
    """Saving adds (almost) nothing over the tensor; loading adds the tensor once (torch.save paths: 2-3x)."""
    mb = 96
    payload = mb << 20
    assert _probe(tmp_path, "save", mb) < 0.25 * payload
    assert _probe(tmp_path, "load", mb) < 1.25 * payload


def test_no_children_allowed_falls_back_to_this_process(tmp_path, monkeypatch, capsys):
    import dfdistill.data.decode as dec

    class NoFork:
        def Pool(self, *a, **k):
            raise AssertionError("daemonic processes are not allowed to have children")

    files = make_files(tmp_path / "img", n=9)
    ref = decode_files(files, 8, 3, workers=1)
    monkeypatch.setattr(dec.mp, "get_context", lambda method: NoFork())
    assert torch.equal(decode_files(files, 8, 3, workers=2, chunk=2), ref)
    assert "decoding in this process" in capsys.readouterr().out
