"""Writing files so that a killed process never leaves a half-written one, and hashing them.

Every artefact the project writes (weights, cards, checkpoints, run configs, caches) goes
through here: a temp file in the same folder (so the rename is atomic on every filesystem),
fsync, then ``os.replace`` onto the final name. Readers see the old file or the new one,
never a torn one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def temp_beside(path: str | os.PathLike) -> Iterator[Path]:
    """A temp file in path's folder (same filesystem, so os.replace is atomic); removed if left."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def fsync(path: str | os.PathLike) -> None:
    # Without it a crash right after the rename can leave an empty file under the final name.
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temp file onto path, with the mode a plain open() would have given it.

    mkstemp makes files owner-only (0600), and an app run as another user (a Space's
    container) must still read what the CLI wrote.
    """
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temp file beside `path`, then move it onto `path`.

    The folder is created if missing. On any error the temp file is removed and the old
    file (if any) stays as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with temp_beside(path) as tmp:
        write(tmp)
        fsync(tmp)
        publish(tmp, path)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
