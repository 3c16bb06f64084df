"""Atomic file writes: a temporary file in the destination's folder, then ``os.replace``.

A crash or a full disk never leaves half a file where a reader (a resume, a report, a cache lookup)
expects a whole one; the temporary file sits beside the destination so the rename never crosses
file systems, whatever ``TMPDIR`` is.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_directory", "atomic_path", "atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto ``path`` when the block exits normally.

    For writers that want a file name rather than a handle (``torch.save``, ``savefig``). The
    temporary file is removed when the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the file gets what open() would give it
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[Any]], None], mode: str = "wb", **open_kwargs: Any) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, rename it onto ``path``
    (e.g. ``atomic_write(path, lambda fh: torch.save(obj, fh))``)."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (``\\n`` line endings on every platform)."""
    atomic_write(path, lambda fh: fh.write(text), "w", encoding=encoding, newline="\n")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: str | Path, obj: Any, **dump_kwargs: Any) -> None:
    """``json.dump(obj)`` to ``path`` atomically (``dump_kwargs`` as for ``json.dumps``)."""
    import json

    atomic_write_text(path, json.dumps(obj, **dump_kwargs))


@contextmanager
def atomic_directory(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; on success it replaces ``out_dir`` by rename, so
    readers see either the old complete folder or the new complete one, never a partial one."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():
            # A folder cannot be renamed onto a non-empty one: move the old one aside first.
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old, out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
