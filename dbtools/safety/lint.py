"""Online-migration safety lint: squawk where it covers a rule, dbtools' own rules where it does
not, on the upgrade and the downgrade SQL of each revision separately (so that tables created by
earlier revisions count as existing tables with traffic, and tables created earlier in the same
script as new ones).

What is checked:

* squawk's default rules (index builds and drops without CONCURRENTLY on existing tables, DDL
  without ``lock_timeout``/``statement_timeout``, column type changes and other rewrites,
  constraints without ``NOT VALID``, dropped tables, columns, schemas…), all of them but those
  in ``SQUAWK_EXCLUDED`` (each with its reason; none today);
* ``RULES``: what squawk does not see: table rewrites by ``VACUUM FULL``, ``CLUSTER``,
  ``SET TABLESPACE``/``LOGGED``; ``TRUNCATE`` and ``DELETE`` without ``WHERE``; timeouts that
  cannot work (``SET LOCAL`` outside a transaction, ``lock_timeout = 0``); statements that
  PostgreSQL refuses inside a transaction block; blocking DDL hidden in ``DO`` blocks; statements
  dbtools cannot classify.

Revisions are linted in the order Alembic applies them (merges and branches included), each
classified against what earlier revisions created. A revision whose SQL cannot be rendered
offline is one ``unrenderable-revision`` finding per direction. Squawk findings that are wrong
about a statement are left out (``_not_a_finding``: Alembic's version table, ``NOT VALID``
asked of a primary key or unique constraint, binary-compatible type "changes", ``DROP INDEX``
of a table the script drops). The project's ``[tool.dbtools.lint]`` declarations
(``dbtools.safety.declarations``) leave rules and revisions out, each with a reason.

A finding is ignored only by a comment in the revision's file that names the rule and gives a
reason::

    # dbtools-lint: ignore ban-drop-table in downgrade because it drops only what 0002 created

``in upgrade|downgrade`` is optional (both when left out). An ignore without a reason
(``because`` and at least three words) is itself a finding (``invalid-ignore``), and so is an
ignore that matches nothing (``unused-ignore``); neither can be ignored.

Findings are ``dbtools.findings.Finding``s: the rule is the check, a violation is ``fail``, an
ignored finding ``skipped`` with the ignore's reason in ``because``; the subject is the statement
on one line ("" for a whole script), ``location`` the revision, direction and line, ``source``
squawk or dbtools.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from alembic.script import Script

from dbtools.errors import UsageError
from dbtools.findings import FAILING, Finding, Location, Rule, check_names, rule, run_rules
from dbtools.redaction import redact
from dbtools.safety.base import BaseSchema
from dbtools.safety.classify import RUN_TIME, Classification, SchemaContext, classify, qualify
from dbtools.safety.declarations import LintDeclarations, declarations_file, lint_declarations
from dbtools.safety.locks import Blocking
from dbtools.safety.squawk import run_squawk, squawk_version
from dbtools.schema import revisions
from dbtools.schema.revisions import Migrations, RunOptions, UnrenderableRevision
from dbtools.sqltext.split import (
    OfflineStatement,
    read_offline_sql,
    split_statements,
    strip_comments,
)

log = logging.getLogger(__name__)

DIRECTIONS = ("upgrade", "downgrade")
MIN_REASON_WORDS = 3

# Project-wide exclusions of squawk rules, each with its reason (none today: every default rule
# applies, and a revision that must break one says why in an ignore comment).
SQUAWK_EXCLUDED: dict[str, str] = {}
UNIGNORABLE = ("invalid-ignore", "unused-ignore")

_IGNORE_MARK = re.compile(r"#\s*dbtools-lint:(?P<body>.*)$")
_IGNORE = re.compile(
    r"^\s*ignore\s+(?P<rules>[a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)"
    r"(?:\s+in\s+(?P<direction>upgrade|downgrade))?"
    r"(?:\s+because\b(?P<reason>.*))?\s*$",
    re.I,
)


SQUAWK = "squawk"


def location(finding: Finding) -> Location:
    """Where a lint finding is (every lint finding has a location)."""
    assert finding.location is not None, finding
    return finding.location


@dataclass(frozen=True)
class Ignore:
    """A ``# dbtools-lint: ignore …`` comment of a revision."""

    revision: str
    rules: tuple[str, ...]
    direction: str | None
    reason: str
    line: int


@dataclass(frozen=True)
class LintResult:
    """Every finding of every revision, the ignored ones with their reasons."""

    revisions: tuple[str, ...]
    findings: tuple[Finding, ...]
    squawk_version: str
    squawk_excluded: dict[str, str]
    rules_left_out: dict[str, str] = field(default_factory=dict)  # by the project, with reasons
    revisions_left_out: dict[str, str] = field(default_factory=dict)

    @property
    def violations(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status in FAILING)

    @property
    def ignored(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "skipped")

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class LintScript:
    """The offline SQL of one revision in one direction, classified statement by statement."""

    revision: str
    direction: str
    sql: str
    statements: tuple[OfflineStatement, ...]
    classifications: tuple[Classification, ...]
    settings: dict[str, str]
    version_table: str = "public.alembic_version"

    def items(self) -> Iterator[tuple[int, OfflineStatement, Classification]]:
        for index, statement in enumerate(self.statements):
            yield index, statement, self.classifications[index]

    def created_before(self, index: int) -> set[str]:
        """Relations created by this script before statement *index*: new, so nobody uses them."""
        return {
            obj.name
            for found in self.classifications[:index]
            for obj in found.created
            if obj.kind in ("table", "index", "materialized view")
        }

    def all_new(self, index: int, relations: Iterable[str]) -> bool:
        new = self.created_before(index)
        names = list(relations)
        return bool(names) and all(name in new for name in names)

    def violation(
        self, check: str, message: str, statement: OfflineStatement | None, source: str = "dbtools"
    ) -> Finding:
        """A *check* violation by *statement* of this script (None: the whole script)."""
        return Finding(
            check,
            "fail",
            _one_line(statement),
            message,
            source=source,
            location=Location(
                self.revision, self.direction, statement.first_line if statement else 1
            ),
        )


def lint_revisions(
    *,
    ini: revisions.IniPath = None,
    only: Sequence[str] | None = None,
    config_file: Path | None = None,
    run: RunOptions | None = None,
    base_schema: str | None = None,
) -> LintResult:
    """Lint the upgrade and downgrade SQL of every revision (or of *only* these), in the order
    Alembic applies them, merges and branches included.

    The project's declarations (``[tool.dbtools.lint]`` in *config_file*, else in the
    ``pyproject.toml`` beside its alembic.ini) leave rules and revisions out, each with a
    reason. A revision whose SQL cannot be rendered offline is one ``unrenderable-revision``
    finding; the other revisions are linted. A column whose type an ``alter_column`` changes is
    known by its ``existing_type`` when no earlier revision created it; a renamed table keeps
    what is known of its columns. *run*: how the project's env.py runs (``RunOptions``).
    *base_schema*: the schema the history starts from (``dbtools.safety.base``): the columns
    it defines are known to the revisions.

    Raises ``UsageError`` for an unknown revision in *only*, ``ConfigError`` for bad
    declarations or an empty history, ``PrerequisiteMissing`` when squawk is not installed.
    """
    migrations = Migrations(ini, run)
    migrations.require_revisions()
    order = migrations.upgrade_order()
    known = {revision.revision for revision in order}
    for wanted in only or ():
        if wanted not in known:
            raise UsageError(f"unknown revision {wanted!r} (known: {', '.join(sorted(known))})")
    declared = lint_declarations(
        declarations_file(migrations.project.directory, config_file), known
    )
    left_out = _revisions_left_out(migrations, declared)
    selected = [
        rev for rev in order if (not only or rev.revision in only) and rev.revision not in left_out
    ]
    log.info("linting %d revisions: %s", len(selected), ", ".join(r.revision for r in selected))
    history = SchemaContext()
    if base_schema is not None:
        for statement in split_statements(BaseSchema.parse(base_schema).ddl(migrations)):
            history.learn(classify(statement.sql, history))
    scripts, findings = _scripts(migrations, order, {rev.revision for rev in selected}, history)
    findings += _squawk_findings(scripts) + [f for s in scripts for f in _rule_findings(s)]
    ignores: list[Ignore] = []
    for revision in selected:
        found_ignores, problems = _read_ignores(revision)
        ignores += found_ignores
        findings += problems
    rules_left_out = declared.rules_left_out
    findings = [f for f in findings if f.check not in rules_left_out]
    findings = _apply_ignores(findings, ignores)
    positions = {rev.revision: position for position, rev in enumerate(selected)}
    findings.sort(key=lambda f: _position(f, positions))
    return LintResult(
        revisions=tuple(rev.revision for rev in selected),
        findings=tuple(findings),
        squawk_version=squawk_version(),
        squawk_excluded=dict(SQUAWK_EXCLUDED),
        rules_left_out=rules_left_out,
        revisions_left_out=left_out,
    )


def _revisions_left_out(migrations: Migrations, declared: LintDeclarations) -> dict[str, str]:
    left_out = dict(declared.skip_revisions)
    if declared.skip_before is not None:
        baseline, reason = declared.skip_before
        for revision in migrations.upgrade_order(baseline):
            if revision.revision != baseline:
                left_out.setdefault(revision.revision, f"before {baseline}: {reason}")
    return left_out


def _scripts(
    migrations: Migrations, order: list[Script], selected: set[str], history: SchemaContext
) -> tuple[list[LintScript], list[Finding]]:
    """The upgrade and downgrade scripts of the *selected* revisions, each classified against
    what the revisions before it created (their upgrade SQL, rendered as far as it renders), and
    a finding for each script that cannot be rendered. *history*: what the base created."""
    scripts: list[LintScript] = []
    findings: list[Finding] = []
    last = max((i for i, rev in enumerate(order) if rev.revision in selected), default=-1)
    for revision in order[: last + 1]:
        wanted = revision.revision in selected
        before = history.copy()
        for direction in DIRECTIONS if wanted else ("upgrade",):
            try:
                rendered = migrations.render(revision, direction)
            except UnrenderableRevision as err:
                if wanted:
                    findings.append(_unrenderable(err))
                continue
            table = rendered.environment.qualified_version_table
            context = before.copy() if direction == "upgrade" else history.copy()
            context.learn_column_types(rendered.existing_types)
            script = _script(rendered.sql, revision.revision, direction, context, table)
            if direction == "upgrade":
                history.learn_column_types(rendered.existing_types)
                for found in script.classifications:
                    history.learn(found)
            if wanted:
                scripts.append(script)
    return scripts, findings


def _unrenderable(err: UnrenderableRevision) -> Finding:
    return Finding(
        "unrenderable-revision",
        "fail",
        "",
        f"its {err.direction} SQL cannot be rendered offline, so it is not linted: {err.reason}",
        location=Location(err.revision, err.direction, 1),
    )


def _position(finding: Finding, order: dict[str, int]) -> tuple[int, int, int, str]:
    where = location(finding)
    direction = DIRECTIONS.index(where.direction) if where.direction in DIRECTIONS else 2
    return (order.get(where.revision, -1), direction, where.line, finding.check)


def check_sql(sql: str, *, revision: str = "-", direction: str = "upgrade") -> list[Finding]:
    """dbtools' own rules (not squawk's) on a script of SQL written as Alembic's offline SQL."""
    return _rule_findings(_script(sql, revision, direction))


def _script(
    sql: str,
    revision: str,
    direction: str,
    context: SchemaContext | None = None,
    version_table: str = "public.alembic_version",
) -> LintScript:
    script = read_offline_sql(sql)
    context = context or SchemaContext()
    classified = []
    for statement in script.statements:
        found = classify(statement.sql, context)
        context.learn(found)
        classified.append(found)
    return LintScript(
        revision,
        direction,
        sql,
        script.statements,
        tuple(classified),
        script.settings,
        version_table,
    )


# -- squawk ----------------------------------------------------------------------------------------


def _squawk_findings(scripts: list[LintScript]) -> list[Finding]:
    with tempfile.TemporaryDirectory(prefix="dbtools-lint-") as scratch:
        files: dict[str, LintScript] = {}
        for number, script in enumerate(scripts):
            safe = re.sub(r"[^\w.-]", "_", script.revision)
            path = Path(scratch) / f"{number:04d}-{safe}.{script.direction}.sql"
            path.write_text(script.sql)
            files[str(path)] = script
        raw = run_squawk([Path(p) for p in files])
    findings = []
    for item in raw:
        if item.rule in SQUAWK_EXCLUDED:
            continue
        script = files.get(item.file) or _by_name(files, item.file)
        statement = _statement_at(script, item.line)
        if statement is not None and _not_a_finding(item.rule, script, statement):
            continue
        found = script.violation(item.rule, item.message, statement, SQUAWK)
        if statement is None:  # squawk's own line, when no statement holds it
            found = replace(found, location=replace(location(found), line=item.line))
        findings.append(found)
    return findings


def _not_a_finding(check: str, script: LintScript, statement: OfflineStatement) -> bool:
    """Squawk findings that are wrong about this statement (docs/safety.md, "dbtools lint"):
    Alembic's own version table; NOT VALID asked of a primary key or unique constraint
    (PostgreSQL has no such thing); a type "change" that keeps every value as stored (the same
    type, varchar to text); DROP INDEX without CONCURRENTLY of an index whose table the script
    drops too."""
    found = script.classifications[script.statements.index(statement)]
    if _only_version_table(found, script.version_table):
        return True
    if check == "constraint-missing-not-valid":
        return any(kind in found.action for kind in ("(PRIMARY KEY)", "(UNIQUE)"))
    if check == "changing-column-type":
        return "ALTER COLUMN TYPE" in found.action and not found.rewrites_table
    if check == "require-concurrent-index-deletion":
        tables = {obj.table for obj in found.dropped if obj.kind == "index"}
        dropped = {
            obj.name for c in script.classifications for obj in c.dropped if obj.kind == "table"
        }
        return bool(tables) and None not in tables and tables <= dropped
    return False


def _only_version_table(found: Classification, version_table: str) -> bool:
    names = [lock.relation for lock in found.locks] + [obj.name for obj in found.created]
    names += [obj.name for obj in found.dropped]
    return bool(names) and all(qualify(name) == version_table for name in names)


def _by_name(files: dict[str, LintScript], reported: str) -> LintScript:
    for path, script in files.items():
        if Path(path).name == Path(reported).name:
            return script
    raise UsageError(f"squawk reported on a file dbtools did not give it: {reported}")


def _statement_at(script: LintScript, line: int) -> OfflineStatement | None:
    for statement in script.statements:
        if statement.first_line <= line <= max(statement.last_line, statement.first_line):
            return statement
    return None


def _one_line(statement: OfflineStatement | None, width: int = 100) -> str:
    if statement is None:
        return ""
    text = redact(statement.one_line)  # a migration may set a role's password
    return text if len(text) <= width else text[: width - 1] + "…"


# -- dbtools' rules --------------------------------------------------------------------------------


@rule("table-rewrite")
def table_rewrite(script: LintScript) -> Iterator[Finding]:
    """Rewrites squawk does not flag: VACUUM FULL, CLUSTER, SET TABLESPACE/LOGGED/UNLOGGED/
    ACCESS METHOD, and any rewrite inside a DO block."""
    for index, statement, found in script.items():
        if not found.rewrites_table:
            continue
        squawk_sees = found.parser != "do-block" and (
            "ALTER COLUMN TYPE" in found.action or "ADD COLUMN" in found.action
        )
        relations = [lock.relation for lock in found.locks]
        if squawk_sees or script.all_new(index, relations):
            continue
        yield script.violation(
            "table-rewrite",
            f"{found.action} rewrites {', '.join(relations)} holding ACCESS EXCLUSIVE: reads "
            "and writes wait for the whole rewrite",
            statement,
        )


@rule("destructive-statement")
def destructive_statement(script: LintScript) -> Iterator[Finding]:
    """Deleting every row (TRUNCATE, DELETE without WHERE) and data loss inside DO blocks;
    squawk flags dropped tables, columns and schemas itself."""
    for index, statement, found in script.items():
        for loss in found.data_loss:
            whole = found.action in ("TRUNCATE", "DELETE") and loss.what == "every row"
            if not (whole or found.parser == "do-block"):
                continue
            if script.all_new(index, [loss.table]):
                continue
            yield script.violation(
                "destructive-statement", f"{found.action} destroys {loss.what} of {loss.table}",
                statement,
            )  # fmt: skip


_SET_TIMEOUT = re.compile(
    r"^SET\s+(?P<local>LOCAL\s+)?(?P<name>lock_timeout|statement_timeout)\s*(=|\bTO\b)\s*"
    r"'?(?P<value>[^';]*)'?\s*$",
    re.I,
)


@rule("timeout-ineffective")
def timeout_ineffective(script: LintScript) -> Iterator[Finding]:
    """Timeouts that protect nothing: ``lock_timeout`` 0 (wait forever), ``SET LOCAL`` outside
    a transaction (PostgreSQL ignores it, so the autocommit block runs without it)."""
    if _is_zero(script.settings.get("lock_timeout")):
        yield script.violation(
            "timeout-ineffective", "lock_timeout is 0 for the whole script: DDL may queue forever",
            None,
        )  # fmt: skip
    for _, statement, _found in script.items():
        match = _SET_TIMEOUT.match(strip_comments(statement.sql))
        if not match:
            continue
        if match.group("local") and not statement.in_transaction:
            yield script.violation(
                "timeout-ineffective",
                f"SET LOCAL {match.group('name')} outside a transaction has no effect: use SET "
                "(and RESET after the autocommit block)",
                statement,
            )
        elif match.group("name").lower() == "lock_timeout" and _is_zero(match.group("value")):
            yield script.violation(
                "timeout-ineffective", "lock_timeout = 0 lets the following DDL queue forever",
                statement,
            )  # fmt: skip


def _is_zero(value: str | None) -> bool:
    return value is not None and re.fullmatch(r"0+\s*(ms|s|min)?", value.strip(), re.I) is not None


@rule("autocommit-in-transaction")
def autocommit_in_transaction(script: LintScript) -> Iterator[Finding]:
    """Statements PostgreSQL refuses inside a transaction block (DROP INDEX CONCURRENTLY,
    REINDEX CONCURRENTLY, VACUUM…); squawk flags CREATE INDEX CONCURRENTLY itself."""
    for _, statement, found in script.items():
        if found.needs_autocommit and statement.in_transaction:
            if found.action == "CREATE INDEX CONCURRENTLY":
                continue
            yield script.violation(
                "autocommit-in-transaction",
                f"{found.action} cannot run inside a transaction block: put it in an "
                "autocommit_block()",
                statement,
            )


@rule("blocking-ddl-in-do-block")
def blocking_ddl_in_do_block(script: LintScript) -> Iterator[Finding]:
    """DDL inside a DO block (squawk cannot see into it) that blocks writes on an existing table."""
    for index, statement, found in script.items():
        if found.parser != "do-block" or found.blocks is Blocking.NEITHER:
            continue
        blocked = [
            lock.relation
            for lock in found.locks
            if lock.level.blocks is not Blocking.NEITHER
            and (lock.relation == RUN_TIME or not script.all_new(index, [lock.relation]))
        ]
        if blocked:
            yield script.violation(
                "blocking-ddl-in-do-block",
                f"the DO block takes {found.lock.value if found.lock else '?'} on "
                f"{', '.join(blocked)}, blocking {found.blocks.value}",
                statement,
            )


@rule("unclassified-statement")
def unclassified_statement(script: LintScript) -> Iterator[Finding]:
    """A statement dbtools cannot classify: nobody has checked what it locks."""
    for _, statement, found in script.items():
        if found.warning:
            yield script.violation("unclassified-statement", found.warning, statement)


RULES: tuple[Rule[LintScript], ...] = (
    table_rewrite,
    destructive_statement,
    timeout_ineffective,
    autocommit_in_transaction,
    blocking_ddl_in_do_block,
    unclassified_statement,
)
CHECK_NAMES: tuple[str, ...] = check_names(RULES)


def _rule_findings(script: LintScript) -> list[Finding]:
    return run_rules(RULES, script)


# -- ignores -------------------------------------------------------------------------------------


def read_ignores(path: Path, revision: str) -> tuple[list[Ignore], list[Finding]]:
    """The ignore comments of a revision's file, and the findings its malformed ones make."""
    ignores: list[Ignore] = []
    problems: list[Finding] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        mark = _IGNORE_MARK.search(line)
        if not mark:
            continue
        body = mark.group("body").strip()
        match = _IGNORE.match(body)
        reason = (match.group("reason") or "").strip() if match else ""

        def problem(message: str, number: int = number, body: str = body) -> Finding:
            return Finding(
                "invalid-ignore", "fail", body, message, location=Location(revision, "-", number)
            )

        if not match:
            problems.append(
                problem(
                    "cannot read this ignore: write "
                    "'# dbtools-lint: ignore RULE[,RULE] [in upgrade|downgrade] because REASON'"
                )
            )
            continue
        rules = tuple(rule.strip().lower() for rule in match.group("rules").split(","))
        unignorable = [rule for rule in rules if rule in UNIGNORABLE]
        if unignorable:
            problems.append(problem(f"{', '.join(unignorable)} cannot be ignored"))
        elif len(reason.split()) < MIN_REASON_WORDS:
            problems.append(
                problem(
                    f"an ignore needs a reason: 'because' and at least {MIN_REASON_WORDS} words "
                    f"saying why {', '.join(rules)} is safe here"
                )
            )
        else:
            direction = match.group("direction")
            ignores.append(
                Ignore(revision, rules, direction.lower() if direction else None, reason, number)
            )
    return ignores, problems


def _read_ignores(revision: Script) -> tuple[list[Ignore], list[Finding]]:
    return read_ignores(Path(revision.path), revision.revision)


def _apply_ignores(findings: list[Finding], ignores: list[Ignore]) -> list[Finding]:
    used: set[tuple[int, str]] = set()
    result = []
    for finding in findings:
        if finding.check in UNIGNORABLE:
            result.append(finding)
            continue
        at = location(finding)
        for ignore in ignores:
            if (
                ignore.revision == at.revision
                and finding.check in ignore.rules
                and ignore.direction in (None, at.direction)
            ):
                used.add((id(ignore), finding.check))
                finding = replace(finding, status="skipped", because=ignore.reason)
                break
        result.append(finding)
    for ignore in ignores:
        for name in ignore.rules:
            if (id(ignore), name) not in used:
                where = f" in {ignore.direction}" if ignore.direction else ""
                result.append(
                    Finding(
                        "unused-ignore",
                        "fail",
                        "",
                        f"nothing in revision {ignore.revision}{where} breaks {name}: remove "
                        "the ignore (or fix the rule name)",
                        location=Location(ignore.revision, "-", ignore.line),
                    )
                )
    return result
