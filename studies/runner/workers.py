"""Workers: `run_study` makes this process one worker of a study, `run_workers` starts several on this machine.

A worker claims waiting trials until none is left (a search study's worker then samples new cells while the
budget lasts), then waits while other workers' trials run, taking over any whose worker died; it stops when
every cell is complete, pruned or finally failed.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import Any

from flowkit.progress_bars import ProgressBar, progress_bar
from flowkit.settings import ConfigError
from flowkit.studies.runner import backends, storage
from flowkit.studies.runner.claims import claim_trial, enqueue_missing, sample_trial
from flowkit.studies.runner.heartbeat import heartbeat
from flowkit.studies.runner.storage import HEARTBEAT_S, StoredStudy, load_optuna_study, stored_study_lock
from flowkit.studies.runner.study_progress import StudyProgress, progress_of
from flowkit.studies.runner.trial import CellFailedError, run_trial
from flowkit.studies.study import Study

POLL_S = 2.0
"""How often an idle worker of a journal study looks for trials to take over."""


def _open_and_enqueue(study: Study, runs_dir: Path, storage_url: str | None, heartbeat_s: int) -> StoredStudy:
    """The stored study (created if new) with every missing cell enqueued; a bad storage or study fails here."""
    study.check_data()
    backends.check_journal(storage_url)
    backends.make_study_dir(runs_dir, study.name)
    optuna_study = load_optuna_study(study, runs_dir, storage_url, create=True, heartbeat_s=heartbeat_s)
    with stored_study_lock(optuna_study, runs_dir):
        enqueue_missing(optuna_study, study)
    return optuna_study


def _progress_bar(study: Study, optuna_study: StoredStudy, progress: bool) -> ProgressBar:
    state = progress_of(study, optuna_study)
    return progress_bar(
        total=state.seeds_total, initial=state.seeds_done, desc=study.name, unit="run", disable=not progress
    )


def run_study(
    study: Study,
    runs_dir: Path,
    storage_url: str | None = None,
    *,
    progress: bool = True,
    heartbeat_s: int = HEARTBEAT_S,
    vectorize_seeds: bool = False,
    track: str | None = None,
) -> StudyProgress:
    """Run (or resume) cells of the study on this worker until every cell is complete or finally failed,
    waiting while other workers' trials run and taking over those whose worker died.

    `vectorize_seeds` (or the study's own `vectorize_seeds`) trains each cell's seeds as one vmapped program;
    `track` names an experiment tracker every run also logs to (flowkit.training.trackers).
    """
    optuna_study = _open_and_enqueue(study, runs_dir, storage_url, heartbeat_s)
    bar = _progress_bar(study, optuna_study, progress)
    poll_s = heartbeat_s if storage.is_database(optuna_study) else POLL_S
    try:
        while True:
            with stored_study_lock(optuna_study, runs_dir):  # a claim and its worker record are one step
                claimed = claim_trial(optuna_study)
                if claimed is None and study.search is not None:
                    claimed = sample_trial(optuna_study, study)
            if claimed is not None:
                with heartbeat(optuna_study, claimed[0]):
                    run_trial(
                        study,
                        *claimed,
                        runs_dir,
                        progress=progress,
                        bar=bar,
                        vectorize_seeds=vectorize_seeds or study.vectorize_seeds,
                        track=track,
                    )
                continue
            with stored_study_lock(optuna_study, runs_dir):  # an error is retried by the next run
                if enqueue_missing(optuna_study, study, retried=("worker died",)):
                    continue
            if not storage.trials(optuna_study, storage.RUNNING):
                break
            time.sleep(poll_s)
    finally:
        bar.close()
    return progress_of(study, optuna_study)


class WorkersFailedError(RuntimeError):
    """Workers stopped with cells of the study left undone; the message gives each distinct error once."""


INTERRUPTED_EXIT = 130
"""A worker's exit code once it stopped on SIGINT or SIGTERM, its trial stored as interrupted (128 + 2)."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals that stop a study's processes with their running trials stored as interrupted (resumable)."""


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt inside the block, so that either stops the study as Ctrl-C does.
    SIGINT is set even where it was ignored: a shell script starts its background commands (`... &`) with SIGINT
    ignored, and `kill -INT` of such a study did nothing while it ran on. Only the main thread may set handlers;
    elsewhere the caller's stand."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {stop: signal.getsignal(stop) for stop in STOP_SIGNALS}
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.default_int_handler)
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)


def _stop_at_the_first_interrupt(signum: int, frame: Any) -> None:
    """A worker stops at its first SIGINT or SIGTERM and ignores the next ones: after Ctrl-C (the terminal signals
    the whole group) the parent forwards its own, which must not cut short the worker's storing of its trial."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    raise KeyboardInterrupt


def _stop_when_the_parent_ends() -> None:
    """Send this worker SIGTERM when its parent ends, however it ended (SIGKILL included), so that no orphan runs
    the study on: the parent's end closes the pipe that `parent_process().join` waits on. (Linux's
    PR_SET_PDEATHSIG fires when the *thread* that started the worker ends, which need not be the parent's end.)"""
    parent = multiprocessing.parent_process()

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="flowkit-parent-watch", daemon=True).start()


def _worker_process(worker: Callable[..., StudyProgress], errors: SimpleQueue, *args: Any, **kwargs: Any) -> None:
    """A worker process: its error goes to the parent as one line (the parent reports each distinct one once)
    instead of a traceback per worker; an interrupt, a SIGTERM or its parent's end stops it quietly, its trial
    stored as interrupted."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, _stop_at_the_first_interrupt)
    _stop_when_the_parent_ends()
    try:
        worker(*args, **kwargs)
    except KeyboardInterrupt:
        sys.exit(INTERRUPTED_EXIT)
    except CellFailedError as error:
        errors.put((error.error, str(error.log)))
        sys.exit(1)
    except Exception as error:
        message = str(error) if isinstance(error, ConfigError) else f"{type(error).__name__}: {error}"
        errors.put((backends.hide_password(message), None))
        sys.exit(1)


def _ended(process: multiprocessing.process.BaseProcess) -> str:
    code = process.exitcode
    how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
    return f"{process.name} {how}"


def _interrupt(processes: list[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        if process.is_alive() and process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)


def run_workers(
    study: Study,
    runs_dir: Path,
    storage_url: str | None = None,
    *,
    workers: int,
    progress: bool = True,
    heartbeat_s: int = HEARTBEAT_S,
    vectorize_seeds: bool = False,
    track: str | None = None,
    worker: Callable[..., StudyProgress] = run_study,
) -> StudyProgress:
    """Run the study with `workers` processes on this machine, showing their common progress (runs/s, ETA).

    The storage is opened and the cells enqueued here first, so a bad storage or study fails before any
    process starts. SIGINT or SIGTERM stops every worker, each storing its trial as interrupted; so does this
    process's end, however it ends. Each process runs `worker` (run_study; tests give a cheap objective). A study whose
    cells all completed (or were pruned) has succeeded, whatever became of its workers; otherwise a worker's
    failure raises WorkersFailedError with each distinct error once, in the worker's words.
    """
    optuna_study = _open_and_enqueue(study, runs_dir, storage_url, heartbeat_s)
    context = multiprocessing.get_context("spawn")
    errors = context.SimpleQueue()
    processes = [
        context.Process(
            target=_worker_process,
            args=(worker, errors, study, runs_dir, storage_url),
            kwargs={"progress": False, "heartbeat_s": heartbeat_s, "vectorize_seeds": vectorize_seeds, "track": track},
            name=f"flowkit-worker-{index}",
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    _watch(processes, study, optuna_study, progress)
    state = progress_of(study, optuna_study)
    failed = [process for process in processes if process.exitcode]
    if not failed or state.finished:
        return state
    if all(process.exitcode == INTERRUPTED_EXIT for process in failed):
        raise KeyboardInterrupt  # the workers were interrupted (the signal reached them first, or them alone)
    raise WorkersFailedError(f"study {study.name!r}: " + "; ".join(_reasons(errors, failed)))


def _watch(
    processes: list[multiprocessing.process.BaseProcess], study: Study, optuna_study: StoredStudy, progress: bool
) -> None:
    """Show the workers' common progress until every one has ended; an interrupt here stops them too."""
    bar = _progress_bar(study, optuna_study, progress)
    with interruptible():
        try:
            # every process is asked, so each that ended is reaped: a zombie would look alive to the other workers
            while [process for process in processes if process.is_alive()]:
                time.sleep(1.0)
                bar.update(progress_of(study, optuna_study).seeds_done - bar.n)
        except KeyboardInterrupt:
            _interrupt(processes)  # a SIGINT or SIGTERM sent to this process alone stops the workers too
            raise
        finally:
            for process in processes:
                process.join()
            bar.close()


def _reasons(errors: Any, failed: list[multiprocessing.process.BaseProcess]) -> list[str]:
    """The failed workers' distinct errors, each once, in their words; else how each process ended."""
    logs: dict[str, list[str]] = {}
    while not errors.empty():
        message, log = errors.get()
        logs.setdefault(message, []).extend([log] if log else [])
    return [_reason(message, found) for message, found in logs.items()] or [_ended(process) for process in failed]


def _reason(message: str, logs: list[str]) -> str:
    """A distinct error once, with where its traceback was kept (the first cell's log, and how many more)."""
    if not logs:
        return message
    more = f", and in {len(logs) - 1} more run folders' error.log" if len(logs) > 1 else ""
    return f"{message} (the traceback is in {logs[0]}{more})"
