"""Renderers for downgrade plans, rehearsals and lint results: Markdown for people, JSON (with a
``schema_version`` and a ``kind``: ``dbtools.output``) for pipelines. Pure functions from results
to text; nothing here prints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate

from dbtools.db.server import major_of
from dbtools.output import byte_size, dump_json, markdown_cell, to_jsonable
from dbtools.safety.lint import LintResult, location
from dbtools.safety.plan import DowngradePlan, Relation, RevisionPlan, Step
from dbtools.safety.rehearse import Rehearsal

# -- shared ----------------------------------------------------------------------------------------


def markdown_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], align: str = ""
) -> str:
    """A GitHub-flavoured table; ``|`` and newlines inside cells are escaped."""
    cells = [[markdown_cell(value) for value in row] for row in rows]
    colalign = [("right" if a == "r" else "left") for a in align] if align else None
    return tabulate(
        cells, headers=list(headers), tablefmt="github", colalign=colalign, disable_numparse=True
    )


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 1:
        return "< 1 s"
    if seconds < 120:
        return f"~{seconds:.0f} s"
    if seconds < 7200:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


# -- downgrade plans ---------------------------------------------------------------------------------


def plan_json(plan: DowngradePlan) -> str:
    payload = to_jsonable(plan)
    payload["estimated_seconds"] = plan.estimated_seconds
    payload["data_loss_tables"] = list(plan.data_loss_tables)
    return dump_json("downgrade-plan", payload)


def plan_markdown(plan: DowngradePlan) -> str:
    """The plan as Markdown: summary, warnings, how to run it, then each revision's steps."""
    lines = [f"# Downgrade plan: {plan.from_revision} → {plan.to_revision}", ""]
    lines += [_summary(plan), ""]
    if not plan.revisions:
        lines += [f"Nothing to do: the start is already {plan.to_revision}.", ""]
        return "\n".join(lines)
    if plan.data_loss_tables:
        lines += [
            "**Data loss.** This downgrade destroys data in "
            + ", ".join(f"`{t}`" for t in plan.data_loss_tables)
            + ". Each is exported first (`\\copy … TO` a CSV file).",
            "",
        ]
    lines += ["## Warnings", ""]
    lines += [f"- {warning}" for warning in plan.warnings] or ["- none"]
    lines += ["", "## How to run it", ""]
    retries = (
        f"a revision that times out is retried up to {plan.lock_retries} times."
        if plan.env_is_dbtools
        else "the project's env.py is not dbtools', so nothing says a revision that times out "
        "is retried: rerun its command."
    )
    lines += [
        "Revision by revision, newest first: run the revision's export steps with `psql` "
        "(stop the writers of those tables first), then its `alembic downgrade` command. A "
        f"statement waits at most lock_timeout ({plan.lock_timeout or 'not set'}) for its locks; "
        + retries,
        "",
    ]
    for index, revision in enumerate(plan.revisions, 1):
        exports = [s.number for s in revision.steps if s.kind == "export"]
        run = [s.number for s in revision.steps if s.kind != "export"]
        before = f"steps {_span(exports)} (exports), then " if exports else ""
        lines.append(
            f"{index}. Revision {revision.revision}: {before}`{revision.command}` "
            f"(steps {_span(run)})"
        )
    lines.append("")
    for revision in plan.revisions:
        lines += _revision_section(revision, plan)
    return "\n".join(lines).rstrip() + "\n"


def _summary(plan: DowngradePlan) -> str:
    source = {"head": " (head of the migrations)", "current": " (the database's revision)"}
    database = (
        f"{plan.live.database} (PostgreSQL {major_of(plan.live.server_version_num)}, "
        f"at revision {plan.live.current_revision})"
        if plan.live
        else "none: offline plan, no sizes or row estimates (pass --dsn for them)"
    )
    total = plan.estimated_seconds
    work = (
        f"{human_seconds(total)} once locks are granted"
        if total is not None
        else "unknown without a connection"
    )
    rows = [
        ("From", f"{plan.from_revision}{source.get(plan.from_source, '')}"),
        ("To", plan.to_revision),
        ("Revisions undone", ", ".join(r.revision for r in plan.revisions) or "none"),
        ("Database", database),
        ("Lock timeout", plan.lock_timeout or "not set"),
        ("Statement timeout", plan.statement_timeout or "not set"),
        ("Estimated work", work),
    ]
    return markdown_table(("", ""), rows)


def _span(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}–{numbers[-1]}"


def _revision_section(revision: RevisionPlan, plan: DowngradePlan) -> list[str]:
    lines = [f"## Revision {revision.revision} → {revision.down_revision}: {revision.title}", ""]
    lines += [f"Command: `{revision.command}`", ""]
    rows = [
        (
            step.number,
            step.action,
            step.lock.value if step.lock else "none",
            step.blocks.value,
            _transaction(step),
            "yes" if step.destroys_data else "no",
            "yes" if step.rerunnable else "**no**",
            ", ".join(_relation(r) for r in step.relations) or "-",
            human_seconds(step.estimated_seconds),
        )
        for step in revision.steps
    ]
    headers = (
        "step", "what", "lock", "blocks", "transaction", "destroys data", "safe to rerun",
        "relations", "work",
    )  # fmt: skip
    lines += [markdown_table(headers, rows, "rlllllllr"), ""]
    if revision.removes or revision.not_removed:
        lines += ["Objects its upgrade created, in the order this downgrade removes them:", ""]
        removed = [(str(r.object), f"step {r.step} ({r.how})") for r in revision.removes]
        removed += [(str(obj), "**not removed**") for obj in revision.not_removed]
        lines += [markdown_table(("object", "removed by"), removed), ""]
    lines += [f"### Statements of revision {revision.revision}", ""]
    for step in revision.steps:
        lines += _statement(step)
    return lines


def _transaction(step: Step) -> str:
    if step.kind == "export":
        return "psql, before"
    return (
        f"yes (#{step.transaction})"
        if step.in_transaction
        else f"no: autocommit (#{step.transaction})"
    )


def _relation(relation: Relation) -> str:
    if relation.exists is False:
        return f"{relation.name} (not in the database)"
    if relation.total_bytes is None:
        return relation.name
    rows = "? rows" if relation.estimated_rows is None else f"~{relation.estimated_rows:,} rows"
    return f"{relation.name} ({byte_size(relation.total_bytes, missing='?')}, {rows})"


def _statement(step: Step) -> list[str]:
    # An export is a psql meta-command: no semicolon.
    code = step.sql if step.kind == "export" else step.sql.rstrip() + ";"
    lines = [f"**Step {step.number}**: {step.action}", "", "```sql", code, "```"]
    notes = list(step.notes)
    if step.warning:
        notes.insert(0, f"**warning**: {step.warning}")
    for loss in step.data_loss:
        notes.append(f"destroys {loss.what} of {loss.table}")
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    lines.append("")
    return lines


# -- rehearsals --------------------------------------------------------------------------------------


def rehearsal_json(rehearsal: Rehearsal) -> str:
    payload = to_jsonable(rehearsal)
    payload["passed"] = rehearsal.passed
    payload["failures"] = [step.revision for step in rehearsal.failures]
    for step, item in zip(rehearsal.steps, payload["steps"], strict=True):
        item["passed"] = step.passed
        item["no_change"] = step.no_change
        item["differences"] = [str(d) for d in step.differences]
    return dump_json("rehearsal", payload)


def rehearsal_table(rehearsal: Rehearsal) -> str:
    """The pass/fail table, one row a revision, and a verdict line."""

    def yes_no(value: bool | None) -> str:
        return "not run" if value is None else ("yes" if value else "NO")

    rows = []
    for step in rehearsal.steps:
        result = ("no change" if step.no_change else "PASS") if step.passed else "FAIL"
        downgrade = yes_no(step.downgrade_restores)
        if step.irreversible is not None:
            result, downgrade = "irreversible, by declaration", "not rehearsed"
        said = [str(d) for d in step.differences] or ([step.error] if step.error else [])
        if step.irreversible is not None:
            said.append(step.irreversible)
        said += [f"note: {note}" for note in step.notes]
        if step.no_change:
            said.append("its upgrade changed nothing in the schema")
        rows.append(
            (
                step.revision,
                step.down_revision,
                yes_no(step.upgraded),
                downgrade,
                yes_no(step.reupgrade_matches),
                result,
                "; ".join(said),
            )
        )
    rows += [
        (revision, "", "not run", "not run", "not run", "not run", "")
        for revision in rehearsal.not_run
    ]
    headers = (
        "revision", "down to", "upgrade", "downgrade leaves no trace", "upgrade again same schema",
        "result", "objects that differ / error / notes",
    )  # fmt: skip
    return markdown_table(headers, rows) + "\n\n" + _rehearsal_verdict(rehearsal) + "\n"


def _rehearsal_verdict(rehearsal: Rehearsal) -> str:
    declared = sum(1 for step in rehearsal.steps if step.irreversible is not None)
    unchanged = sum(1 for step in rehearsal.steps if step.no_change)
    also = f", {declared} irreversible by declaration" if declared else ""
    also += f", {unchanged} with no change" if unchanged else ""
    if rehearsal.base:
        also += f", on the base {rehearsal.base}"
    failed = rehearsal.failures
    if rehearsal.passed:
        return (
            f"PASS: every downgrade undid its upgrade exactly ({len(rehearsal.steps)} revisions"
            f"{also}, {rehearsal.where})"
        )
    if not rehearsal.keep_going and failed:
        differences = "; ".join(str(d) for d in failed[0].differences)
        return f"FAIL: revision {failed[0].revision} ({rehearsal.where})" + (
            f": {differences}" if differences else ""
        )
    passed = sum(1 for step in rehearsal.steps if step.passed and not step.no_change)
    verdict = (
        f"FAIL: {len(failed)} of {len(rehearsal.steps)} revisions failed, {passed} passed{also}"
        f" ({rehearsal.where}): {', '.join(step.revision for step in failed) or 'none'}"
    )
    if rehearsal.not_run:
        verdict += f"; {len(rehearsal.not_run)} not run"
    if rehearsal.stopped:
        verdict += f" ({rehearsal.stopped})"
    return verdict


# -- lint ----------------------------------------------------------------------------------------------


def lint_json(result: LintResult) -> str:
    payload = to_jsonable(result)
    payload["passed"] = result.passed
    payload["violations"] = len(result.violations)
    payload["ignored"] = len(result.ignored)
    return dump_json("lint", payload)


def lint_table(result: LintResult) -> str:
    """Violations first, then what is ignored and why, then the verdict."""
    lines = []
    if result.violations:
        violations = []
        for f in result.violations:
            at = location(f)
            violations.append(
                (at.revision, at.direction, at.line, f.check, f.source, f.subject, f.message)
            )
        headers = ("revision", "sql", "line", "rule", "from", "statement", "problem")
        lines += ["Violations:", "", markdown_table(headers, violations), ""]
    if result.ignored:
        grouped: dict[tuple[str, str, str, str], int] = {}
        for finding in result.ignored:
            at = location(finding)
            key = (at.revision, at.direction, finding.check, finding.because or "")
            grouped[key] = grouped.get(key, 0) + 1
        ignored = [
            (rev, direction, rule, count, reason)
            for (rev, direction, rule, reason), count in grouped.items()
        ]
        lines += [
            "Ignored, with reasons:",
            "",
            markdown_table(("revision", "sql", "rule", "findings", "ignored because"), ignored),
            "",
        ]
    excluded: dict[str, list[str]] = {}
    for rule, reason in result.squawk_excluded.items():
        excluded.setdefault(reason, []).append(rule)
    for reason, rules in excluded.items():
        lines += [f"squawk rules not applied ({', '.join(rules)}): {reason}.", ""]
    left_out: dict[str, list[str]] = {}
    for rule, reason in result.rules_left_out.items():
        left_out.setdefault(reason, []).append(rule)
    for reason, rules in left_out.items():
        lines += [f"Rules left out by the project ({', '.join(rules)}): {reason}.", ""]
    if result.revisions_left_out:
        lines += [
            "Revisions not linted, by declaration: "
            + "; ".join(f"{rev} ({why})" for rev, why in result.revisions_left_out.items())
            + ".",
            "",
        ]
    verdict = "PASS" if result.passed else "FAIL"
    lines.append(
        f"{verdict}: {len(result.violations)} violations, {len(result.ignored)} ignored with "
        f"reasons, in {len(result.revisions)} revisions (upgrade and downgrade SQL; squawk "
        f"{result.squawk_version})"
    )
    return "\n".join(lines) + "\n"
