"""method=whole: the "Full dataset" row trains the evaluation protocol on every (kept) real row."""

from __future__ import annotations

import pytest
import torch

from dfdistill.core.errors import ConfigError
from dfdistill.run.pipeline import run


def test_whole_evaluates_the_whole_kept_split(compose_cfg, tmp_path, monkeypatch) -> None:
    from dfdistill.methods.whole import Whole

    seen = []
    inner = Whole.evaluate

    def spy(self, images, labels, *a, **k):
        seen.append((images.shape[0], torch.bincount(labels).tolist()))
        return inner(self, images, labels, *a, **k)

    monkeypatch.setattr(Whole, "evaluate", spy)
    cfg = compose_cfg(["profile=smoke", "method=whole", "pruning=random", "pruning.ratio=0.5",
                       "eval.compare_random=false"], out=tmp_path / "w")
    rec = run(cfg)
    saved = torch.load(tmp_path / "w" / "synthetic.pt")
    assert saved["images"].shape[0] == rec["n_real_used"] == rec["n_real_total"] // 2
    assert torch.bincount(saved["labels"]).tolist() == rec["pruning_info"]["kept_per_class"]
    assert seen == [(rec["n_real_used"], rec["pruning_info"]["kept_per_class"])]  # trained on every kept row
    assert rec["iterations"] == 0 and len(rec["accs"]) == rec["n_eval"]
    from dfdistill.core.artifacts import load_tensor_file

    ck = load_tensor_file(tmp_path / "w" / "checkpoint.pt")
    assert "images" not in ck["distiller"]  # the set is the split itself: nothing to checkpoint
    assert run(cfg)["config_key"] == rec["config_key"]  # a rerun returns the stored result


def test_whole_refuses_iterations(compose_cfg) -> None:
    from dfdistill.config.resolve import resolve_config

    with pytest.raises(ConfigError, match="no iterations"):
        resolve_config(compose_cfg(["method=whole", "method.iterations=5"]))
