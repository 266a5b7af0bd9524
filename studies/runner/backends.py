"""Opening a study's Optuna storage: a journal file in the study's folder (or at a given path), with the file
lock every worker appends under and the repair of a record cut off mid-write, or a database URL (whose password
is never shown). storage.py reads and writes the stored study through what this opens."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from flowkit import runs
from flowkit.settings import ConfigError

HEARTBEAT_S = 60
"""On a database, a running trial records a heartbeat this often; one silent for 3 intervals is taken over."""


_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)\S*@")


def hide_password(text: str) -> str:
    """A storage URL, or a message naming one, with its password shown as *** (whatever is printed, logged or
    stored names a database this way: a password in the text would be read by anyone who reads those)."""
    return _PASSWORD.sub(r"\1***@", text)


class StorageError(ConfigError):
    """The Optuna storage cannot be opened, or holds a different study under the same name."""


def study_dir(runs_dir: Path, study_name: str) -> Path:
    """The study's folder, refused unless its name is a slug and it lies inside the runs folder."""
    return runs.inside(runs_dir, runs.check_slug(study_name, f"study name {study_name!r}"))


def make_study_dir(runs_dir: Path, study_name: str) -> Path:
    """The study's folder, made and tried with a file, so that one that cannot be written is refused before
    anything is stored or built (and no journal is created empty)."""
    folder = study_dir(runs_dir, study_name)
    runs.check_writable(folder, "study folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_journal(runs_dir: Path, study_name: str) -> Path:
    return study_dir(runs_dir, study_name) / "optuna.journal"


def check_journal(url: str | None) -> None:
    """Refuse a journal given with --storage that cannot be written (it, or its folder) or holds something other
    than journal records, before the study folder is made (Optuna would find out at its first append)."""
    if url is None or "://" in url:
        return
    path = Path(url)
    runs.check_writable(path.parent, "journal folder")
    if path.exists() and (not path.is_file() or not os.access(path, os.R_OK | os.W_OK)):
        raise StorageError(f"journal {path} cannot be read and written; give a journal file you may write")
    if path.exists():
        _check_records(path, path.read_bytes().split(b"\n")[:-1])


def open_storage(url: str | None, runs_dir: Path, study_name: str, heartbeat_s: int = HEARTBEAT_S) -> BaseStorage:
    """The study's storage: a journal file under runs/ by default, a journal path, or a database URL."""
    if url is None:
        url = str(default_journal(runs_dir, study_name))
    if "://" not in url:
        path = Path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = JournalFlock(path)
            _repair_journal(path, lock)
            return JournalStorage(JournalFileBackend(str(path), lock))
        except OSError as error:
            raise StorageError(f"storage {url!r}: cannot open the journal file ({error.strerror})") from None
    engine_url = url
    if url.startswith(("postgresql://", "postgres://")):
        engine_url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not SQLAlchemy's psycopg2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(engine_url, heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(f"storage {hide_password(url)!r}: cannot connect ({hide_password(reason)})") from None


class JournalFlock:
    """The journal's lock: an flock on a file beside it, which the kernel releases when its holder's process ends.

    Optuna's default, JournalFileSymlinkLock, is a symlink its holder removes. A worker killed while appending
    leaves it behind, and every other worker waits out its grace period (30 s) before breaking it: with kills
    every 0.5 s that was most of the study's time. Shortening the grace period is not safe: a live holder slowed
    past it (fsync on a busy disk, a paused process) would lose the lock to a second writer, and the waiters time
    the period from the journal's own mtime (os.stat follows the link), so once one breaks the lock the others
    can break the new holder's as well. An flock needs no grace period: it is held exactly as long as its holder
    lives, on local file systems and on NFS (Linux emulates flock with NFS byte-range locks), like the kit's
    study lock beside it. Every flowkit worker takes this lock; do not append to a journal that workers of an
    older flowkit (which take the symlink) are writing. (Optuna's lock base class is private; JournalFileBackend
    needs only acquire and release.)
    """

    def __init__(self, journal: Path):
        self._path = journal.with_name(journal.name + ".flock")
        self._held = contextlib.ExitStack()

    def acquire(self) -> bool:
        self._held.enter_context(runs.exclusive_lock(self._path))
        return True

    def release(self) -> None:
        self._held.close()


def _check_records(path: Path, lines: list[bytes]) -> None:
    """Refuse a journal whose whole lines are not all Optuna journal records (damaged, or another file)."""
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and {"op_code", "worker_id"} <= record.keys()):
            raise StorageError(
                f"journal {path}: line {number} is damaged or no Optuna journal record, and the records after it "
                f"cannot be trusted; restore the file from a copy, or keep the {number - 1} records before it by "
                "cutting the file back to them"
            )


def _repair_journal(path: Path, lock: JournalFlock) -> None:
    """Cut a record left unfinished at the journal's end (power lost, disk full mid-write) back to the last
    whole one, saying so: Optuna skips it when reading, but would append the next record onto it, after which
    nothing reads the journal. A record damaged before the end is refused: the records after it cannot be
    trusted. The end is cut under Optuna's own lock, so that a worker's append under way is not taken for a
    cut-off record; the lock is taken only then."""
    if not path.exists():
        return
    data = path.read_bytes()
    *whole, tail = data.split(b"\n")
    _check_records(path, whole)
    if not tail:
        return
    lock.acquire()
    try:
        with path.open("r+b") as journal:
            journal.seek(len(data) - len(tail))
            if b"\n" in journal.read():  # it was an append under way, finished since
                return
            journal.truncate(len(data) - len(tail))
            os.fsync(journal.fileno())
    finally:
        lock.release()
    print(
        f"flowkit: journal {path}: its last record (line {len(whole) + 1}, {len(tail)} bytes) was cut off "
        f"mid-write; removed it, the {len(whole)} records before it are intact",
        file=sys.stderr,
    )
