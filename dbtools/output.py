"""Where generated files land: a timestamped name, written atomically (a temporary file in the
same directory, then a rename), so a reader never sees half a file and a failure leaves none."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_DIRECTORY = Path("reports")


def timestamped_path(
    stem: str, suffix: str, directory: Path = DEFAULT_DIRECTORY, now: datetime | None = None
) -> Path:
    """``reports/<stem>-20261128T134500Z.<suffix>`` (UTC); *stem* made safe for a file name.

    A name already taken (two reports in the same second) gets ``-2``, ``-3``… so that nothing
    written earlier is replaced.
    """
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    safe = re.sub(r"[^\w.-]+", "-", stem).strip("-")
    base = f"{safe}-{moment:%Y%m%dT%H%M%SZ}"
    path = directory / f"{base}.{suffix}"
    counter = 1
    while path.exists():
        counter += 1
        path = directory / f"{base}-{counter}.{suffix}"
    return path


def write_atomically(path: Path, text: str) -> Path:
    """Write *text* to *path* through a temporary file and a rename; return *path*."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(handle, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from others
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path
