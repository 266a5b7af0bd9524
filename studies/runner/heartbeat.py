"""A running trial's heartbeat: on a database, a thread records one every interval, so that other workers can
tell a trial whose worker died (its heartbeats stop) from one still running."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

from flowkit.studies.runner import storage
from flowkit.studies.runner.storage import StoredStudy, Trial


@contextlib.contextmanager
def heartbeat(optuna_study: StoredStudy, trial: Trial) -> Iterator[None]:
    """Record the trial's heartbeat from a thread while it runs (databases with heartbeats only). A beat that
    fails (the database restarting) is retried at the next interval: a silent thread would let another worker
    take over the trial while it still runs."""
    interval = storage.heartbeat_interval(optuna_study)
    if interval is None:
        yield
        return
    record = storage.heartbeat_recorder(optuna_study, trial)
    stopped = threading.Event()

    def beat() -> None:
        while True:
            try:
                record()
            except Exception as error:
                warnings.warn(f"trial {trial.number}: its heartbeat was not recorded ({error}); retrying", stacklevel=1)
            if stopped.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()
