"""Progress bars that suit where they are written: tqdm's bar on a terminal; elsewhere (a log file, a CI console)
one plain line every PLAIN_EVERY_S seconds and at the end, without the cursor movements a redrawn bar writes."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

PLAIN_EVERY_S = 30.0


def progress_bar(
    *, total: int, desc: str, unit: str, disable: bool = False, initial: int = 0, **options: Any
) -> ProgressBar:
    """A tqdm bar if standard error is a terminal, else a PlainProgress with the same interface."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, disable=disable, initial=initial, **options)
    return PlainProgress(total, desc, unit, disable=disable, initial=initial)


class PlainProgress:
    """The part of tqdm's interface the kit uses, printing `desc: n/total unit (pct%) postfix` as plain lines."""

    def __init__(
        self, total: int, desc: str, unit: str, *, disable: bool = False, initial: int = 0, stream: TextIO | None = None
    ):
        self.total, self.desc, self.unit, self.disable, self.n = total, desc, unit, disable, initial
        self.postfix = ""
        self._stream = stream or sys.stderr
        self._printed = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.n += count
        if time.monotonic() - self._printed >= PLAIN_EVERY_S:
            self._print()

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        self._print()
        self.disable = True

    def _print(self) -> None:
        if self.disable:
            return
        share = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        postfix = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}/{self.total} {self.unit}s{share}{postfix}", file=self._stream, flush=True)
        self._printed = time.monotonic()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()


ProgressBar = tqdm | PlainProgress
