"""Datasets of the course and a small on-disk cache for what a re-run would otherwise recompute."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from course_utils.assets import data_dir, data_dirs, shown


def cache_key(*parts: object) -> str:
    """A short hash of everything a cached result depends on (model, data, settings)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_path(folder: str, name: str, key: str, suffix: str = ".npy") -> Path:
    """Where a cached result lives: ``data/<folder>/<name>-<key>.npy``, or where it was found (a read-only
    shared copy of ``data/`` is searched too)."""
    for base in data_dirs():
        path = base / folder / f"{name}-{key}{suffix}"
        if path.is_file():
            return path
    return data_dir() / folder / f"{name}-{key}{suffix}"


def _save(path: Path, write: Callable[[Path], None]) -> bool:
    """Write a cache file whole, then rename it; on failure (disk full, read-only) say so and keep going."""
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # an interrupted run leaves no half file
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        tmp.replace(path)
        return True
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        print(f"Could not cache {shown(path)} ({exc.strerror or exc}): the result is kept for this session only; "
              "free some disk space or set COURSE_DATA_DIR to a writable folder.", file=sys.stderr)
        return False


def cached_array(folder: str, name: str, key: str, compute: Callable[[], np.ndarray],
                 mmap: bool = False) -> np.ndarray:
    """Load ``data/<folder>/<name>-<key>.npy`` if present; otherwise compute it and save it.

    ``mmap=True`` returns a read-only view of the file: its pages are read from disk when used and, like
    a library's, can be dropped again under memory pressure instead of counting as the kernel's own memory.
    """
    path = cache_path(folder, name, key)
    if not path.is_file():
        array = compute()
        if not _save(path, lambda tmp: np.save(tmp, array, allow_pickle=False)) or not mmap:
            return array
        del array
    return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)


def cached_json(folder: str, name: str, key: str, compute: Callable[[], object]) -> object:
    """Load ``data/<folder>/<name>-<key>.json`` if present; otherwise compute it and save it."""
    path = cache_path(folder, name, key, ".json")
    if path.is_file():
        return json.loads(path.read_text())
    result = compute()
    _save(path, lambda tmp: tmp.write_text(json.dumps(result, indent=1)))
    return result


def key_of(value: object) -> object:
    """How an input enters a cache key: a model by its weights, an array by its bytes, a function by its code."""
    import torch

    from course_utils.features import fingerprint, images_fingerprint

    if isinstance(value, torch.nn.Module):
        return fingerprint(value)
    if isinstance(value, torch.Tensor):
        return images_fingerprint(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return images_fingerprint(value)
    if callable(value) and hasattr(value, "__code__"):
        try:
            return inspect.getsource(value)
        except (OSError, TypeError):  # no source to read: the compiled code stands in for it
            return hashlib.sha256(value.__code__.co_code).hexdigest()
    return value


def cached(folder: str, name: str, compute: Callable[[], object], *inputs: object) -> object:
    """``compute()``'s result, saved in ``data/<folder>/``: a re-run with the same code of ``compute`` and the
    same ``inputs`` (models, arrays, settings, helper functions) reads it back instead of computing it again.

    An array is saved as ``.npy``, anything else as JSON (a tuple comes back as a list).
    """
    key = cache_key(key_of(compute), *(key_of(value) for value in inputs))
    for suffix in (".npy", ".json"):
        if cache_path(folder, name, key, suffix).is_file():
            if suffix == ".npy":
                return cached_array(folder, name, key, compute)
            return cached_json(folder, name, key, compute)
    result = compute()
    if isinstance(result, np.ndarray):
        return cached_array(folder, name, key, lambda: result)
    return cached_json(folder, name, key, lambda: result)


def keyed_path(folder: str, name: str, *inputs: object, suffix: str = ".pt") -> Path:
    """``data/<folder>/<name>-<key><suffix>``, the key made from ``inputs`` as ``cached`` makes it: a place for a
    checkpoint that a changed setting does not reuse."""
    return cache_path(folder, name, cache_key(*(key_of(value) for value in inputs)), suffix)
