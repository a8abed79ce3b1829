"""EDD segments and the smoke pipelines of the pruning/filtering methods."""

import pytest

from dfdistill.methods.edd import segment_bounds


def test_segment_bounds_cover_ipc_exclusively():
    for ipc, K in [(10, 2), (10, 3), (1, 4), (50, 5)]:
        b = segment_bounds(ipc, K)
        assert b[0][0] == 0 and b[-1][1] == ipc and all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))
        assert all(hi > lo for lo, hi in b)


@pytest.mark.slow
@pytest.mark.parametrize("over", [
    ["method=edd", "ipc=2", "method.filter_epochs=2"],
    ["method=dfcolearn", "ipc=1"],
    ["method=dc", "ipc=1", "pruning=loss"],
    ["method=dm", "ipc=1", "pruning=loss"],
    ["method=dc", "ipc=1", "pruning=ite"],
    ["method=dm", "ipc=1", "pruning=ite"],
    ["method=dc", "ipc=1", "pruning=bilp"],
    ["method=dm", "ipc=1", "pruning=bilp"],
])
def test_smoke_pipelines(compose_cfg, over):
    from dfdistill import pipeline

    rec = pipeline.run(compose_cfg(["profile=smoke", "dataset=digits", "eval.compare_random=false", *over]))
    assert 0.0 <= rec["acc_mean"] <= 1.0


@pytest.mark.slow
def test_edd_resume_keeps_segment_state(compose_cfg, tmp_path):
    """Run 2 of 3 iterations, then resume: the filter pass is not repeated and state is restored."""
    from dfdistill import pipeline
    from dfdistill.artifacts import load_tensor_file

    over = ["profile=smoke", "method=edd", "ipc=2", "method.filter_epochs=2", "eval.compare_random=false",
            "stage=distill"]
    out = tmp_path / "edd"
    pipeline.run(compose_cfg(over + ["method.iterations=3"], out))
    ck = load_tensor_file(out / "checkpoint.pt")
    assert ck["distiller"]["edd_filtered"] == 1 and not bool(ck["distiller"]["edd_active"].all())
