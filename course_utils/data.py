"""Datasets of the course and a small on-disk cache for what a re-run would otherwise recompute."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from course_utils.assets import data_dir


def cache_key(*parts: object) -> str:
    """A short hash of everything a cached result depends on (model, data, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_path(folder: str, name: str, key: str) -> Path:
    """Where ``cached_array`` keeps an array: ``data/<folder>/<name>-<key>.npy``."""
    return data_dir() / folder / f"{name}-{key}.npy"


def cached_array(folder: str, name: str, key: str, compute: Callable[[], np.ndarray],
                 mmap: bool = False) -> np.ndarray:
    """Load ``data/<folder>/<name>-<key>.npy`` if present; otherwise compute it and save it.

    ``mmap=True`` returns a read-only view of the file: its pages are read from disk when used and, like
    a library's, can be dropped again under memory pressure instead of counting as the kernel's own memory.
    """
    path = cache_path(folder, name, key)
    if not path.is_file():
        array = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")  # written whole, then renamed: an interrupted run leaves no half file
        np.save(tmp, array, allow_pickle=False)
        tmp.replace(path)
        if not mmap:
            return array
        del array
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def cached_json(folder: str, name: str, key: str, compute: Callable[[], object]) -> object:
    """Load ``data/<folder>/<name>-<key>.json`` if present; otherwise compute it and save it."""
    path = data_dir() / folder / f"{name}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(path)
    return result

