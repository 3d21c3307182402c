"""Datasets of the course and a small on-disk cache for what a re-run would otherwise recompute."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import inspect
import json
import os
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from course_utils.assets import data_dir, data_dirs, sha256_file, shown, writable


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


def _sum_path(path: Path) -> Path:
    """Where a cache file's checksum is recorded: ``<file>.sum`` beside it."""
    return path.with_name(path.name + ".sum")


def _checksum(path: Path) -> dict:
    """What a cache file's bytes must be: their number and their sha256 (about 0.1 s for 100 MB)."""
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


def _temp_path(path: Path) -> Path:
    """A temporary name beside ``path`` that no other process uses (two lessons may write one entry at once)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")


def _remove_stale_temps(path: Path) -> None:
    """Delete the temporary files of ``path`` left over an hour ago by a write that was killed."""
    for tmp in path.parent.glob(f".{glob.escape(path.stem)}.*.tmp{glob.escape(path.suffix)}"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > 3600:
                tmp.unlink()


def _record(path: Path, checksum: dict) -> None:
    """Write ``path``'s checksum beside it; where that fails the entry is adopted again on its next read."""
    target = _sum_path(path)
    tmp = _temp_path(target)
    try:
        tmp.write_text(json.dumps(checksum))
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _publish(tmp: Path, path: Path, replace: bool) -> bool:
    """Move a finished temporary file to ``path``; False when another process put the entry there first.

    A new entry is hard-linked, which fails if the name exists (as git stores objects): the first process to finish
    wins and later ones drop their copy, so an entry and its recorded checksum always come from one writer.
    """
    if not replace:
        try:
            os.link(tmp, path)
        except FileExistsError:
            tmp.unlink()
            return False
        except OSError:  # a file system without hard links (some network and USB drives)
            pass
        else:
            tmp.unlink()
            return True
    _sum_path(path).unlink(missing_ok=True)  # a damaged entry's checksum must not outlive it
    os.replace(tmp, path)
    return True


def _save(path: Path, write: Callable[[Path], None], replace: bool = False) -> bool:
    """Write a cache file whole under a name of its own, then move it in place and record its checksum; on failure
    (disk full, read-only) say so and keep going. ``replace`` overwrites a damaged entry."""
    tmp = _temp_path(path)  # an interrupted run leaves no half file, and two writers never share one
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        write(tmp)
        checksum = _checksum(tmp)
        if _publish(tmp, path, replace):
            _record(path, checksum)
        return True
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        print(f"Could not cache {shown(path)} ({exc.strerror or exc}): the result is kept for this session only; "
              "free some disk space or set COURSE_DATA_DIR to a writable folder.", file=sys.stderr)
        return False


def _damage(path: Path) -> tuple[str | None, bool]:
    """What is wrong with a cache file's bytes (None: nothing), and whether it has a recorded checksum at all."""
    try:
        recorded = json.loads(_sum_path(path).read_text())
        size, sha256 = int(recorded["size"]), recorded["sha256"]
    except FileNotFoundError:
        return None, False  # written before checksums were recorded
    except (OSError, ValueError, KeyError, TypeError):
        return "its recorded checksum is unreadable", True
    if (actual := path.stat().st_size) != size:
        return f"{actual:,} bytes instead of the {size:,} written", True
    return (None if sha256_file(path) == sha256 else "its bytes changed after it was written"), True


_DAMAGED = object()  # what ``_load`` returns for an entry that must be recomputed


def _load(path: Path, load: Callable[[Path], object]) -> object:
    """``load(path)`` once its bytes match their checksum, else ``_DAMAGED``, said in one line.

    An entry from before checksums were recorded is adopted when it loads: its checksum is recorded now.
    """
    why, recorded = _damage(path)
    if why is None:
        try:
            value = load(path)
        except (ValueError, EOFError) as exc:  # what numpy and json raise on a file cut short or garbled
            why = f"it does not load: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if why is not None:
        print(f"The cached {shown(path)} is damaged ({why}): recomputing it.", file=sys.stderr)
        return _DAMAGED
    if not recorded and writable(path.parent):
        _record(path, _checksum(path))
    return value


def _cached_file(folder: str, name: str, key: str, suffix: str, load: Callable[[Path], object],
                 compute: Callable[[], object], write: Callable[[Path, object], None]) -> tuple[object, Path | None]:
    """The entry read back, or computed and saved: (value, None when read back, else where it was saved or None)."""
    path = cache_path(folder, name, key, suffix)
    found = path.is_file()
    if found:
        value = _load(path, load)
        if value is not _DAMAGED:
            return value, None
    result = compute()
    target = data_dir() / folder / path.name  # a damaged entry in a read-only shared copy is replaced in ours
    saved = _save(target, lambda tmp: write(tmp, result), replace=found and target == path)
    return result, target if saved else None


def cached_array(folder: str, name: str, key: str, compute: Callable[[], np.ndarray],
                 mmap: bool = False) -> np.ndarray:
    """Load ``data/<folder>/<name>-<key>.npy`` if present and intact; otherwise compute it and save it.

    ``mmap=True`` returns a read-only view of the file: its pages are read from disk when used and, like
    a library's, can be dropped again under memory pressure instead of counting as the kernel's own memory.
    """
    mode = "r" if mmap else None
    array, saved = _cached_file(folder, name, key, ".npy", lambda p: np.load(p, mmap_mode=mode, allow_pickle=False),
                                compute, lambda tmp, a: np.save(tmp, a, allow_pickle=False))
    if saved is None or not mmap:
        return array
    del array
    return np.load(saved, mmap_mode="r", allow_pickle=False)


def cached_json(folder: str, name: str, key: str, compute: Callable[[], object]) -> object:
    """Load ``data/<folder>/<name>-<key>.json`` if present and intact; otherwise compute it and save it."""
    return _cached_file(folder, name, key, ".json", lambda p: json.loads(p.read_text()), compute,
                        lambda tmp, result: tmp.write_text(json.dumps(result, indent=1)))[0]


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
