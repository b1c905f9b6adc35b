"""The one SIGTERM handler: commands that clean up on Ctrl-C do the same on SIGTERM (what a
deploy tool's timeout or ``kill`` sends), and exit with code 130 after cleaning up."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from dbtools.errors import Interrupted


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)  # says which, for a record


@contextmanager
def interruptible(message: str) -> Iterator[None]:
    """Within the block SIGTERM acts as Ctrl-C; either, once the block's own cleanup ran (its
    ``finally`` and ``except BaseException`` clauses), becomes ``Interrupted`` (exit code 130)
    saying *message*."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    except KeyboardInterrupt as err:
        raise Interrupted(message) from err
    finally:
        signal.signal(signal.SIGTERM, previous)
