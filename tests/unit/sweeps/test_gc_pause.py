"""A plan runs with the cyclic collector paused (dfdistill/sweeps/gc_pause.py) and gives it back on."""

from __future__ import annotations

import gc

import pytest

from dfdistill.sweeps import gc_pause


def test_paused_inside_on_again_after_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with gc_pause.paused():
            assert not gc.isenabled()
            raise RuntimeError("a plan that fails")
    assert gc.isenabled()


def test_not_asked_or_already_off_it_is_left_as_it_was() -> None:
    with gc_pause.paused(False):
        assert gc.isenabled()
    gc.disable()
    try:
        with gc_pause.paused():
            pass
        assert not gc.isenabled()  # the caller had it off: not switched on behind its back
    finally:
        gc.enable()
