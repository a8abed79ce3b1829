"""Two things Hydra redoes in every composition that need not be redone, skipped while we compose.

Why: a Hydra composition costs ~0.17 s of CPU and a table's plan makes 2-10 of them. About a third
of that is (1) deep-copying the config repository Hydra has just built for this composition (it
copies "to avoid mutating it with initialize_sources()", which only a `hydra.searchpath` calls)
and (2) parsing every YAML file of the defaults list again (the same dozen files each time).
`reused()` makes the copy only when the sources do change (copy on write), and keeps each file's
parse, keyed by its path, size and modification time, handing out a fresh copy of it each time (an
unpickled one: the same objects OmegaConf's load builds). Everything else is Hydra's own code, so
a composition is the one Hydra gives (tests/unit/config/test_hydra_reuse.py compares them).
"""

from __future__ import annotations

import copy
import os
import pickle
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from hydra._internal import config_loader_impl
from hydra._internal.config_repository import CachingConfigRepository, IConfigRepository
from hydra._internal.core_plugins import file_config_source
from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.config_source import ConfigResult

_parsed: dict[tuple, tuple[bytes, dict, str, str]] = {}  # (file, size, mtime) -> (config pickle, header, path, provider)


class _CopyOnWrite(CachingConfigRepository):
    """Hydra's caching repository that copies its delegate only before changing its sources."""

    def __init__(self, delegate: IConfigRepository) -> None:  # noqa: D107 - no super(): it deep-copies
        self.delegate = delegate
        self.cache: dict[str, Optional[ConfigResult]] = {}
        self._own = False

    def initialize_sources(self, config_search_path: ConfigSearchPath) -> None:
        if not self._own:
            self.delegate, self._own = copy.deepcopy(self.delegate), True
        super().initialize_sources(config_search_path)


def _file_key(source: Any, config_path: str) -> Optional[tuple]:
    full = os.path.realpath(os.path.join(source.path, source._normalize_file_name(config_path)))
    try:
        st = os.stat(full)
    except OSError:  # Hydra's own load says what is missing
        return None
    return full, st.st_size, st.st_mtime_ns


def _load_kept(original: Any):
    def load_config(self: Any, config_path: str) -> ConfigResult:
        key = _file_key(self, config_path)
        if key is None:
            return original(self, config_path)
        if key not in _parsed:
            ret = original(self, config_path)
            try:
                _parsed[key] = (pickle.dumps(ret.config), ret.header, ret.path, ret.provider)
            except Exception:  # noqa: BLE001 - a config that does not pickle is parsed every time
                return ret
        blob, header, path, provider = _parsed[key]
        return ConfigResult(config=pickle.loads(blob), path=path, provider=provider, header=dict(header))
    return load_config


@contextmanager
def reused() -> Iterator[None]:
    """Inside the block, Hydra's compositions copy their repository on write and reuse file parses.
    The file source's class is looked up here, each time: Hydra's first plugin scan in a process
    executes that module again (a new class), within the first composition."""
    source = file_config_source.FileConfigSource
    repo, load = config_loader_impl.CachingConfigRepository, source.load_config
    config_loader_impl.CachingConfigRepository = _CopyOnWrite
    source.load_config = _load_kept(load)
    try:
        yield
    finally:
        config_loader_impl.CachingConfigRepository, source.load_config = repo, load
