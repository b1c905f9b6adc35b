"""Where generated files land: a timestamped name, written atomically (a temporary file in the
same directory, then a rename), so a reader never sees half a file and a failure leaves none.

Every command that writes a file follows one convention (``Destination``): ``--output PATH``, or
``--output -`` for standard output, or a timestamped name in ``--output-dir`` (default
``reports/``). JSON documents carry ``schema_version`` and ``kind`` (``json_document``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dbtools.errors import UsageError

DEFAULT_DIRECTORY = Path("reports")
STDOUT = "-"
SCHEMA_VERSION = 1

log = logging.getLogger(__name__)


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


def json_document(kind: str, payload: Mapping[str, Any]) -> str:
    """One JSON document: ``schema_version``, ``kind``, then *payload*'s keys (keys are only ever
    added within a schema version)."""
    return json.dumps({"schema_version": SCHEMA_VERSION, "kind": kind, **payload}, indent=2) + "\n"


@dataclass(frozen=True)
class Destination:
    """Where a command's file goes: *path* (``-``: standard output), else a timestamped name in
    *directory*."""

    path: str | None = None
    directory: Path = DEFAULT_DIRECTORY

    @classmethod
    def from_options(cls, output: str | None, output_dir: Path | None) -> Destination:
        """From ``--output`` and ``--output-dir``; raises ``UsageError`` when both are given."""
        if output is not None and output_dir is not None:
            raise UsageError("give --output or --output-dir, not both")
        if output is not None and not output.strip():
            raise UsageError("--output needs a path, or - for standard output")
        return cls(output, output_dir if output_dir is not None else DEFAULT_DIRECTORY)

    @property
    def is_stdout(self) -> bool:
        return self.path == STDOUT

    def file_for(self, stem: str, suffix: str, now: datetime | None = None) -> Path:
        """The file to write: *path*, or ``<directory>/<stem>-<UTC time>.<suffix>``."""
        if self.path is not None and not self.is_stdout:
            return Path(self.path)
        return timestamped_path(stem, suffix, self.directory, now)


def write_output(
    text: str, destination: Destination, stem: str, suffix: str, now: datetime | None = None
) -> Path:
    """Write *text* atomically to the file *destination* names (see ``Destination.file_for``).

    Raises ``UsageError`` when it cannot be written (nothing is left behind then). Standard
    output (``--output -``) is the caller's to write.
    """
    if destination.is_stdout:
        raise ValueError("write_output writes files; print to standard output instead")
    path = destination.file_for(stem, suffix, now)
    try:
        write_atomically(path, text)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from err
    log.info("written: %s", path)
    return path
