"""Console progress for long steps, one rule for every command: bars and counts go to stderr, and
only when stderr is a terminal and the user did not ask for quiet (`callmark --quiet`, which sets
CALLMARK_QUIET=1 so child processes stay quiet too). Output that scripts read (stdout) never
carries progress.

    for row in bar(rows, desc="upload tags", unit="device"): ...
    with heartbeat("consensus"): run()          # "consensus … 12 s" while a step without counts runs
    with bytes_bar(path, "read tags") as update: update(n_bytes)
"""
from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterable, Iterator

QUIET_ENV = "CALLMARK_QUIET"


def set_quiet(quiet: bool = True) -> None:
    """Silence (or allow) progress in this process and the processes it starts."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


def quiet() -> bool:
    """True under `callmark --quiet` (CALLMARK_QUIET=1)."""
    return os.environ.get(QUIET_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def enabled(stream=None) -> bool:
    """True when progress may be shown: not quiet and `stream` (stderr) is a terminal."""
    if quiet():
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it", **kw):
    """A tqdm bar on stderr, disabled unless `enabled()`."""
    from tqdm import tqdm
    disable = kw.pop("disable", False) or not enabled()
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=disable,
                mininterval=kw.pop("mininterval", 0.5), **kw)


@contextmanager
def bytes_bar(total_bytes: int | None, desc: str) -> Iterator:
    """Yields update(n_bytes) for a byte-count bar (reading a file)."""
    b = bar(desc=desc, total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024)
    try:
        yield b.update
    finally:
        b.close()


@contextmanager
def heartbeat(desc: str, every_s: float = 1.0) -> Iterator[None]:
    """For a step that cannot count its work: shows `desc … N s` on stderr until it ends."""
    if not enabled():
        yield
        return
    stop = threading.Event()
    t0 = time.perf_counter()

    def beat():
        while not stop.wait(every_s):
            sys.stderr.write(f"\r{desc} … {time.perf_counter() - t0:.0f} s")
            sys.stderr.flush()

    th = threading.Thread(target=beat, name="callmark-heartbeat", daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        sys.stderr.write(f"\r{desc} done in {time.perf_counter() - t0:.1f} s\n")
        sys.stderr.flush()
