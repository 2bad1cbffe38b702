"""`DirectoryLock`: one writer per output directory (a run being trained, an evaluation being played).

A `filelock.FileLock` on DIRECTORY/.sdar.lock, taken without waiting and held while the object lives: a
second process that would write into the same directory (a requeued job while the first still runs, the same
command started twice) is refused with a clear error instead of interleaving its lines with the first one's
and overwriting its checkpoints or results. The operating system drops the lock when the holder exits or is
killed, so a crash never leaves a stale lock behind (the empty lock file stays; it is not a lock by itself).
"""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

LOCK_FILE = ".sdar.lock"


class DirectoryInUse(RuntimeError):
    """Another process holds the directory's lock; the message says which kind and what to do."""


class DirectoryLock:
    """Hold `directory`'s lock until `release()` (or the end of a `with` block); `what` names the holder
    ("evaluation") and `otherwise` what to do instead, for the error a second holder gets."""

    def __init__(self, directory: str | Path, what: str, otherwise: str):
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self._lock: FileLock | None = FileLock(self.path)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            self._lock = None
            raise DirectoryInUse(
                f"{self.directory}: another {what} is writing into this directory (it holds {self.path}); "
                f"{otherwise}"
            ) from None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


__all__ = ["DirectoryInUse", "DirectoryLock"]
