"""`DirectoryLock`: one writer per output directory (a run being trained, an evaluation being played).

An exclusive, non-blocking flock on the directory itself, held while the object lives: a second process that
would write into the same directory (a requeued job while the first still runs, the same command started
twice) is refused with a clear error instead of interleaving its lines with the first one's and overwriting
its checkpoints or results. The kernel drops the lock when the holder exits or is killed, so a crash never
leaves a stale lock behind, and nothing is written into the directory. Worker processes are spawned, not
forked, so they do not inherit it. Without flock (Windows) there is no lock.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class DirectoryInUse(RuntimeError):
    """Another process holds the directory's lock; the message says which kind and what to do."""


class DirectoryLock:
    """Hold `directory`'s lock until `release()` (or the end of a `with` block); `what` names the holder
    ("evaluation") and `otherwise` what to do instead, for the error a second holder gets."""

    def __init__(self, directory: str | Path, what: str, otherwise: str):
        self.directory = Path(directory)
        self._descriptor: int | None = None
        if fcntl is None:
            return
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(descriptor)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise DirectoryInUse(
                f"{self.directory}: another {what} is writing into this directory (it holds its lock); "
                f"{otherwise}"
            ) from None
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the descriptor drops its flock
            self._descriptor = None

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


__all__ = ["DirectoryInUse", "DirectoryLock"]
