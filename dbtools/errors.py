"""One exception root and the exit codes every command shares.

Exit codes (documented in docs/reference.md and tested):

* ``0`` success (for ``verify``: the rollout passes);
* ``1`` checks found problems (``verify``: fail, ``lint``: violations, ``rehearse``: a step failed);
* ``2`` usage, configuration or connection error: nothing was measured or written;
* ``3`` ``verify``: a rollback threshold was crossed, the deploy must roll back (``rollout``:
  rolled back, the traffic was routed back);
* ``4`` ``rollout`` only: the rollback failed (its command exited non-zero or could not start):
  route back by hand;
* ``130`` interrupted (Ctrl-C, SIGTERM) after cleaning up (``capture``: nothing is stored).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_ROLLBACK = 3
EXIT_ROLLBACK_FAILED = 4
EXIT_INTERRUPTED = 130


class DbtoolsError(Exception):
    """Root of every error dbtools reports to a user as one line."""

    exit_code = EXIT_USAGE


class UsageError(DbtoolsError):
    """The command was called with input it cannot act on."""


class ConfigError(DbtoolsError):
    """A configuration file or setting is malformed."""


class ConnectionFailed(DbtoolsError):
    """The server could not be reached or refused the login."""


class PrerequisiteMissing(DbtoolsError):
    """The server lacks something dbtools needs (an extension, a schema, a revision)."""


class SandboxError(DbtoolsError):
    """The throwaway PostgreSQL server could not be started, found or stopped."""


class MigrationError(DbtoolsError):
    """A migration could not be applied safely (lock wait ran out, invalid index, …)."""


class Interrupted(DbtoolsError):
    """The user interrupted a command; what it had written was removed."""

    exit_code = EXIT_INTERRUPTED
