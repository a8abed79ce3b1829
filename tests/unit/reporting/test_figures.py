"""Figure producers: BiLP Fig. 4 diversity per loss stratum, EDD Figs. 1-2 (segments), their script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from dfdistill.data.real import RealData
from dfdistill.pruning.analysis import diversity, stratum_diversity
from dfdistill.reporting import segments as S

from conftest import ROOT
sys.path.insert(0, str(ROOT / "scripts"))
import make_figure  # noqa: E402


def test_diversity_metric() -> None:
    y = torch.arange(2).repeat_interleave(4)
    tight = torch.cat([torch.zeros(4, 2), torch.ones(4, 2) * 10]) + 0.01 * torch.randn(8, 2)
    spread = tight + 3 * torch.randn(8, 2)
    assert diversity(spread, y, 2)["ratio"] > diversity(tight, y, 2)["ratio"]
    # hand computation: class means (0,0) and (2,0); intra = mean squared distance to them; inter around (1,0)
    emb = torch.tensor([[1.0, 0], [-1, 0], [2, 1], [2, -1]])
    d = diversity(emb, torch.tensor([0, 0, 1, 1]), 2)
    assert d["intra"] == pytest.approx(1.0) and d["inter"] == pytest.approx(1.0) and d["ratio"] == pytest.approx(1.0)


def test_stratum_diversity_takes_the_strata_and_the_embedding_callable() -> None:
    """S1 holds the largest scores of each class; the embedding callable sees exactly those rows."""
    n, classes = 20, 2
    labels = torch.arange(classes).repeat(n // classes)
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    real = RealData(images, labels, classes, ["a", "b"], (0.0,), (1.0,))
    scores = torch.arange(n, dtype=torch.float32)  # row i has score i
    seen = []

    def embed(x):
        seen.append(x[:, 0, 0, 0].tolist())
        return x.flatten(1)

    rows = stratum_diversity(real, scores, 5, embed)
    assert [r["stratum"] for r in rows] == [1, 2, 3, 4, 5] and all(r["n"] == 4 for r in rows)
    assert sorted(seen[0]) == [16.0, 17.0, 18.0, 19.0]  # S1 = the 2 largest scores of each class
    assert sorted(seen[-1]) == [0.0, 1.0, 2.0, 3.0]
    assert rows[0] == {"stratum": 1, "n": 4, **diversity(images[[16, 17, 18, 19]].flatten(1), labels[[16, 17, 18, 19]], 2)}


def test_segment_signals_and_cosines_by_hand() -> None:
    init = torch.zeros(4, 1, 1, 2)
    final = torch.tensor([[1.0, 0], [1, 0], [0, 1], [1, 1]]).view(4, 1, 1, 2)
    sig = S.update_signals(final, init)
    labels = torch.tensor([0, 0, 0, 0])
    seg = S.slot_segments(labels, 2, [(0, 1), (1, 2)])
    assert seg.tolist() == [0, 0, 1, 1]  # 4 images, 2 slots: two decoded images per slot
    c = 1 / 2 ** 0.5
    pairs = [1.0, 0.0, c, 0.0, c, c]  # the 6 distinct pairs (0,1),(0,2),(0,3),(1,2),(1,3),(2,3)
    assert S.within_class_cosine(sig, labels) == pytest.approx(sum(pairs) / 6)
    m = S.segment_cosine(sig, labels, seg, 2)
    assert m[0, 0] == pytest.approx(1.0) and m[1, 1] == pytest.approx(c)
    assert m[0, 1] == pytest.approx((0 + c + 0 + c) / 4) and m[1, 0] == pytest.approx(m[0, 1])
    with pytest.raises(ValueError):
        S.update_signals(final, torch.zeros(3, 1, 1, 2))


def test_tsne_gives_two_coordinates_per_point() -> None:
    xy = S.tsne_2d(torch.randn(12, 3, 4, 4), seed=0)
    assert xy.shape == (12, 2)


def test_make_figure_edd_refuses_a_run_of_another_method(tmp_path: Path, capsys) -> None:
    run = tmp_path / "dc"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps({"method": "dc", "ipc": 1, "config": {}}) + "\n")
    torch.save({"images": torch.zeros(1, 1, 2, 2), "labels": torch.zeros(1, dtype=torch.long)}, run / "synthetic.pt")
    assert make_figure.main(["edd", str(run), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "method=edd" in err and len(err.strip().splitlines()) == 1
    assert make_figure.main(["edd", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2


@pytest.mark.slow
def test_edd_figures_end_to_end_smoke(tmp_path: Path) -> None:
    """EDD and DC runs on digits at profile=smoke -> Figs. 1-2; the re-created initial set is the real init."""
    from dfdistill.config.compose import compose_run_config
    from dfdistill.run.pipeline import run

    common = ["profile=smoke", "ipc=4", "logger=none", "eval.compare_random=false", "progress=false"]
    for m in ("edd", "dc"):
        run(compose_run_config([f"method={m}", f"output_dir={tmp_path / m}", *common]))
    assert make_figure.main(["edd", str(tmp_path / "edd"), "--base", str(tmp_path / "dc"), "--out",
                             str(tmp_path / "figs"), "--real", "20"]) == 0
    for f in ("edd_fig1.png", "edd_fig1.csv", "edd_fig1_segments.csv", "edd_fig2.png", "edd_fig2.csv", "edd.md"):
        assert (tmp_path / "figs" / f).exists(), f
    rec = json.loads((tmp_path / "edd" / "results.jsonl").read_text().splitlines()[-1])
    init = make_figure.initial_set(rec, tmp_path / "init")
    real = torch.load(tmp_path / "edd" / "synthetic.pt")
    assert init["images"].shape == real["images"].shape and not torch.equal(init["images"], real["images"])
    from dfdistill.data.datasets import load_dataset
    from omegaconf import OmegaConf

    # EDD's default base is IDC (init=mix: decoded multi-formation tiles); on the DSA base the init is
    # real images, so there every re-created initial image must be a training image
    run(compose_run_config(["method=edd_dsa", f"output_dir={tmp_path / 'edd_dsa'}", *common]))
    rec = json.loads((tmp_path / "edd_dsa" / "results.jsonl").read_text().splitlines()[-1])
    assert rec["config"]["method"]["init"] == "real"
    init = make_figure.initial_set(rec, tmp_path / "init_dsa")
    assert not torch.equal(init["images"], torch.load(tmp_path / "edd_dsa" / "synthetic.pt")["images"])
    train, _ = load_dataset(OmegaConf.create(rec["config"]).dataset)
    flat = train.images.materialize().flatten(1)
    for x in init["images"].flatten(1):
        assert torch.isclose(flat, x).all(1).any()


def test_diversity_producer_end_to_end_smoke(tmp_path: Path) -> None:
    assert make_figure.main(["diversity", "--out", str(tmp_path), "--", "dataset=digits", "profile=smoke"]) == 0
    rows = json.loads((tmp_path / "digits-s0" / "diversity.json").read_text())
    assert [r["stratum"] for r in rows] == list(range(1, 11)) and all(r["ratio"] > 0 for r in rows)
    assert (tmp_path / "bilp_fig4.png").exists() and (tmp_path / "bilp_fig4.csv").exists()
