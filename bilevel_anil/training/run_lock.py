"""One run per output folder: an exclusive lock on ``OUT/.lock`` for the life of the run.

The lock is an ``flock`` on an open file, so the kernel releases it however the process ends
(normal exit, an error, Ctrl-C, SIGKILL): a lock file left behind by a dead run is never stale.
The file holds the holder's pid, which a second run names in its one-line error.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with RunFolderLock(folder):
    ...     pass  # a second RunFolderLock(folder) here raises UsageError naming this pid
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from ..errors import UsageError, first_line

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are then not protected against sharing a folder
    fcntl = None

LOCK_NAME = ".lock"


class RunFolderLock:
    """Hold ``folder/.lock`` exclusively; entering raises a one-line ``UsageError`` when
    another live process holds it, and (with ``existing_run``, that line) when the folder
    already holds a run's ``last.pt`` once the lock is held (a run that finished meanwhile).

    ``shared``: if this process holds the folder already, share its hold instead of failing (a
    recipe that holds its folder for a whole run, ``run.py``'s, calls ``MetaLearner.fit``,
    which asks for it again); any other request for a held folder is refused, in this
    process too."""

    _held: dict[Path, int] = {}  # folders this process holds -> how many times

    def __init__(self, folder: Path, existing_run: Optional[str] = None, *, shared: bool = False):
        self.folder = Path(folder)
        self.existing_run, self.shared = existing_run, shared
        self._fd: Optional[int] = None

    def __enter__(self) -> "RunFolderLock":
        key = self.folder.resolve()
        if self.shared and key in RunFolderLock._held:
            RunFolderLock._held[key] += 1
        else:
            self._acquire()
            RunFolderLock._held[key] = RunFolderLock._held.get(key, 0) + 1
        if self.existing_run is not None and (self.folder / "last.pt").exists():
            self.__exit__()
            raise UsageError(self.existing_run)
        return self

    def _acquire(self) -> None:
        if fcntl is None:
            return
        path = self.folder / LOCK_NAME
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"⟨out⟩ {self.folder}: cannot write there ({first_line(exc)}): choose a writable "
                             "folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(f"{self.folder} is in use by another run (process {holder}, lock {path}): wait for it "
                             "to finish, or choose another ⟨out⟩") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def __exit__(self, *exc: object) -> None:
        key = self.folder.resolve()
        if key in RunFolderLock._held:
            RunFolderLock._held[key] -= 1
            if RunFolderLock._held[key]:
                return
            del RunFolderLock._held[key]
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
