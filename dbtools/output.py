"""What every command and renderer shares: where generated files land, figures as text, Markdown
table cells, and JSON documents.

Files: a timestamped name, written atomically (a temporary file in the same directory, then a
rename), so a reader never sees half a file and a failure leaves none. Every command that writes
a file follows one convention (``Destination``): ``--output PATH``, or ``--output -`` for
standard output, or a timestamped name in ``--output-dir`` (default ``reports/``).

JSON: ``to_jsonable`` converts; every document carries ``schema_version`` and ``kind`` from one
table, ``SCHEMA_VERSIONS`` (``json_document``, ``dump_json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dbtools.errors import UsageError

DEFAULT_DIRECTORY = Path("reports")
STDOUT = "-"

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
    """Write *text* to *path* through a temporary file and a rename; return *path*. Its
    directory must exist (as ``pg_dump -f`` has it: a typo never makes a tree of directories).
    A device or a pipe (``/dev/null``, ``/dev/stdout``, a FIFO) is written through, never
    replaced by a rename."""
    if _is_special(path):
        with path.open("w", encoding="utf-8") as stream:
            stream.write(text)
        return path
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


# -- progress ------------------------------------------------------------------------------------

PROGRESS_EVERY_S = 2.0


class ProgressLog:
    """Long work's progress as log lines at INFO (``-v`` shows them, the library never prints):
    ``WHAT: N of M`` when it starts, at most every *every_s* seconds, and when it is done."""

    def __init__(
        self, logger: logging.Logger, what: str, total: int, every_s: float = PROGRESS_EVERY_S
    ) -> None:
        self.logger, self.what, self.total, self.every_s = logger, what, total, every_s
        self._last: float | None = None

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if self._last is None or done >= self.total or now - self._last >= self.every_s:
            self.logger.info("%s: %d of %d", self.what, done, self.total)
            self._last = now


# -- figures as text -----------------------------------------------------------------------------

NO_VALUE = "–"  # what a table shows for a figure with no data


def percent(value: float | None, digits: int = 1, *, missing: str = NO_VALUE) -> str:
    """A fraction as a percentage: ``0.1234`` as ``12.3%``; *missing* for None."""
    return missing if value is None else f"{value * 100:.{digits}f}%"


def beside(value: float, limits: Iterable[float], render: Callable[[float, int], str]) -> str:
    """*value* rendered with the fewest decimals (one at least) at which it never reads as one of
    the *limits* it differs from: 0.8497 beside 0.85 is ``84.97%``, not ``85.0%``."""
    digits = 1
    while digits < FLOAT_DIGITS and any(
        value != limit and render(value, digits) == render(limit, digits) for limit in limits
    ):
        digits += 1
    return render(value, digits)


def signed_percent(value: float | None, *, missing: str = NO_VALUE) -> str:
    """A relative change as a signed whole percentage: ``0.5`` as ``+50%``."""
    return missing if value is None else f"{value * 100:+.0f}%"


def number(value: float | None, digits: int = 2, *, unit: str = "", missing: str = NO_VALUE) -> str:
    """An integer with thousands separators, a float with *digits* decimals as well, then
    *unit* (``"/s"``, ``" ms"``); *missing* for None."""
    if value is None:
        return missing
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value:,.{digits}f}{unit}"


def byte_size(size: int | None, *, missing: str = NO_VALUE) -> str:
    """``123456`` as ``120.6 kB`` (powers of 1024, as PostgreSQL's ``pg_size_pretty``)."""
    if size is None:
        return missing
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def markdown_cell(value: object) -> str:
    """*value* as one cell of a Markdown pipe table: one line, pipes escaped."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


# -- JSON documents ------------------------------------------------------------------------------

# Every JSON document dbtools writes, by kind, with its schema version. Keys are only ever added
# within a version; removing or renaming a key, or changing its meaning, bumps the kind's version
# here (and CHANGELOG.md says so).
SCHEMA_VERSIONS: dict[str, int] = {
    "verify": 1,
    "verify-canary": 1,
    "report": 2,  # 2: findings share dbtools.findings' keys (check, status, …, fix)
    "downgrade-plan": 1,
    "rehearsal": 1,
    "lint": 2,  # 2: findings share dbtools.findings' keys (check, status, …, location)
    "workload-seed": 1,
    "workload-run": 1,
    "doctor": 2,  # 2: checks are findings (check, status, …, fix) with their commands
    "snapshot": 1,
    "capture": 1,
    "rollout": 1,
    "demo": 1,
}

# Fields whose integers are shown as strings: 64-bit ids do not survive JavaScript's numbers.
AS_TEXT = frozenset({"queryid"})
FLOAT_DIGITS = 6  # so that a document does not depend on the last bit of a sum


def to_jsonable(value: Any, name: str = "") -> Any:
    """*value* as JSON-ready data: dataclasses by field, mappings, sequences, enums by value,
    datetimes in UTC ISO 8601, floats rounded to ``FLOAT_DIGITS``; anything else as text.
    *name* is the field the value came from (``AS_TEXT`` fields become strings)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_jsonable(getattr(value, f.name), f.name) for f in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, name)
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bool) or value is None:
        return value
    if name in AS_TEXT:
        return str(value)
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS)
    if isinstance(value, (int, str)):
        return value
    return str(value)


def json_document(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """*payload* headed by ``schema_version`` (from ``SCHEMA_VERSIONS``) and ``kind``."""
    return {"schema_version": SCHEMA_VERSIONS[kind], "kind": kind, **payload}


def dump_json(kind: str, payload: Mapping[str, Any]) -> str:
    """The *kind* document of *payload* as indented JSON text, ending with a newline."""
    return json.dumps(json_document(kind, payload), indent=2, ensure_ascii=False) + "\n"


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

    def check(self) -> None:
        """Raise ``UsageError`` now, before any work, when the file could not be written later:
        an ``--output`` that is a directory or whose directory does not exist (as ``pg_dump -f``
        has it), an ``--output-dir`` that is not a directory or whose parent does not exist (it
        is created, one level, when written to), or a directory that is not writable."""
        if self.is_stdout:
            return
        if self.path is not None:
            path = Path(self.path)
            if _is_special(path):  # written through (write_atomically): nothing made beside it
                return
            if path.is_dir():
                raise UsageError(f"cannot write {path}: it is a directory")
            if not path.parent.is_dir():
                raise UsageError(f"cannot write {path}: no directory {path.parent}")
            _check_writable(path.parent, path)
        elif self.directory.exists():
            if not self.directory.is_dir():
                raise UsageError(f"cannot write in {self.directory}: it is not a directory")
            _check_writable(self.directory, self.directory)
        elif not self.directory.parent.is_dir():
            raise UsageError(f"cannot write in {self.directory}: no directory "
                             f"{self.directory.parent} to create it in")  # fmt: skip
        else:
            _check_writable(self.directory.parent, self.directory)

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
        if destination.path is None:
            destination.directory.mkdir(exist_ok=True)  # one level: its parent must exist
        write_atomically(path, text)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror or err}") from err
    log.info("written: %s", path)
    return path


def _check_writable(directory: Path, wanted: Path) -> None:
    """Raise ``UsageError`` unless a file can be made in *directory* (for *wanted*): a file is
    made and removed, so that a read-only file system, or a directory only root may write to,
    is found (a permission check would pass both for root)."""
    try:
        with tempfile.TemporaryFile(dir=directory, prefix=".dbtools-probe-"):
            pass
    except OSError as err:
        raise UsageError(f"cannot write {wanted}: {err.strerror or err}") from err


def _is_special(path: Path) -> bool:
    """Whether *path* exists and is neither a regular file nor a directory (a device, a pipe)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
