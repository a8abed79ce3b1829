"""dataset.zca_mode: each ZCA convention against a direct computation of that convention, the recipes
naming theirs, and run identities that only an rfad whitening changes."""

from __future__ import annotations

import pytest
import torch

from dfdistill.data.datasets import load_dataset
from dfdistill.data.zca import ZCA
from dfdistill.core.errors import ConfigError


def _digits(mode: str, **kw) -> dict:
    return {"name": "digits", "root": None, "image_size": 8, "channels": 1, "num_classes": 10, "zca": True,
            "zca_eps": 0.1, "zca_mode": mode, **kw}


def _raw_pixels(tmp_path) -> torch.Tensor:
    """The train split as [0,1] pixels (mean 0 / std 1 leaves them untouched)."""
    raw, _ = load_dataset({**_digits("kornia"), "zca": False, "mean": [0.0], "std": [1.0]}, cache_dir=tmp_path)
    return raw.images[:].double()


def kornia_direct(x: torch.Tensor, eps: float) -> torch.Tensor:
    """kornia ZCAWhitening(eps, unbiased=True) on ToTensor pixels: centred, N-1, eigenvalues + eps."""
    flat = x.reshape(len(x), -1)
    mean = flat.mean(0)
    c = flat - mean
    cov = c.T @ c / (len(x) - 1)
    u, s, _ = torch.linalg.svd(cov)
    return ((c @ (u @ torch.diag((s + eps) ** -0.5) @ u.T))).reshape(x.shape)


def rfad_direct(x: torch.Tensor, reg_coef: float) -> torch.Tensor:
    """RFAD data.py: per-channel standardisation with the train split's stats (torch.std, unbiased), then
    get_zca_matrix: cov = X^T X / N (no per-feature centring), + reg_coef * tr(cov)/D * I, W = U S^-1/2 U^T."""
    x = (x - x.mean([0, 2, 3], keepdim=True)) / x.std([0, 2, 3], keepdim=True)
    flat = x.reshape(len(x), -1)
    cov = flat.T @ flat / len(x)
    reg = reg_coef * torch.trace(cov) / cov.shape[0]
    u, s, _ = torch.svd(cov + reg * torch.eye(cov.shape[0], dtype=cov.dtype))
    return (flat @ torch.einsum("ij,j,kj->ik", u, s ** -0.5, u)).reshape(x.shape)


@pytest.mark.parametrize("mode,direct", [("kornia", kornia_direct), ("rfad", rfad_direct)])
def test_each_mode_is_its_papers_computation(tmp_path, mode, direct):
    """The whitened train split load_dataset serves equals the convention computed directly from the
    pixels, and the other convention is far from it (so the check can fail)."""
    pixels = _raw_pixels(tmp_path)
    tr, _ = load_dataset(_digits(mode), cache_dir=tmp_path)
    got = tr.images[:].double()
    want = direct(pixels, 0.1)
    other = (rfad_direct if direct is kornia_direct else kornia_direct)(pixels, 0.1)
    err = (got - want).abs().max().item()
    assert err < 1e-3 * want.abs().max().item(), err
    assert (got - other).abs().max().item() > 100 * err
    assert tr.zca.mode == mode
    assert torch.allclose(tr.denormalize(tr.images[:]).double(), pixels, atol=1e-3)  # inverse back to pixels
    tr2, _ = load_dataset(_digits(mode), cache_dir=tmp_path)  # from the cache: same mode, same batches
    assert tr2.zca.mode == mode and torch.allclose(tr2.images[:], tr.images[:], atol=1e-5)


def test_rfad_regulariser_is_relative_and_kornia_absolute():
    """Scaling the data by k scales kornia's eigenvalues but not its eps (whitened output changes);
    rfad's regulariser scales with the mean eigenvalue (whitened output is invariant)."""
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(300, 12, generator=g) @ torch.randn(12, 12, generator=g)).view(300, 3, 2, 2)
    for mode, invariant in (("kornia", False), ("rfad", True)):
        a = ZCA().fit(x, 0.1, mode).transform(x)
        b = ZCA().fit(5 * x, 0.1, mode).transform(5 * x)
        assert torch.allclose(a, b, atol=1e-4) == invariant, mode
    z = ZCA.from_state_dict(ZCA().fit(x, 0.1, "rfad").state_dict())
    assert z.mode == "rfad" and ZCA.from_state_dict({k: v for k, v in z.state_dict().items() if k != "mode"}).mode \
        == "kornia"  # states saved before the mode existed are kornia's
    with pytest.raises(ValueError, match="kornia, rfad"):
        ZCA().fit(x, 0.1, "pca")


def test_bad_mode_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match="dataset.zca_mode must be kornia or rfad"):
        load_dataset(_digits("whiten"))


def test_recipes_name_their_convention(resolved):
    def cell(method, dataset, ipc):
        return resolved([f"method={method}", f"dataset={dataset}", "dataset.root=/x", f"ipc={ipc}",
                         "profile=full"]).dataset

    for method, dataset, ipc, mode in (("mtt", "cifar10", 1, "kornia"), ("tesla", "cifar100", 50, "kornia"),
                                       ("rfad", "cifar10", 10, "rfad"), ("rfad", "cifar100", 1, "rfad")):
        d = cell(method, dataset, ipc)
        assert d.zca is True and d.zca_mode == mode, (method, dataset, ipc)


def test_zca_mode_changes_no_identity_where_it_changes_nothing(resolved):
    """zca=false: zca_mode does not enter the distillation / result keys (they equal the keys of the
    config without the key, i.e. of runs made before it existed); kornia with zca=true keeps the earlier
    identity too (it is what those runs computed); rfad whitening is a different run."""
    from omegaconf import OmegaConf, open_dict

    from dfdistill.config.resolve import distill_key, result_key

    def keys(extra, drop_mode=False):
        cfg = resolved(["profile=smoke", "dataset=digits", "method=dc", "ipc=1", *extra])
        if drop_mode:  # the config as it was before zca_mode existed
            with open_dict(cfg):
                del cfg.dataset["zca_mode"]
            assert "zca_mode" not in OmegaConf.to_container(cfg.dataset)
        k = distill_key(cfg)
        return k, result_key(k, cfg)

    before = keys([], drop_mode=True)
    assert keys([]) == before
    assert keys(["dataset.zca_mode=rfad"]) == before
    zca_before = keys(["dataset.zca=true"], drop_mode=True)
    assert keys(["dataset.zca=true"]) == zca_before != before
    assert keys(["dataset.zca=true", "dataset.zca_mode=rfad"])[0] != zca_before[0]
