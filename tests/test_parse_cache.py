"""Each distinct text parsed once: shapes kept across runs (used, invalidated by a changed text or
another sqlglot, bounded, safe under concurrent runs, no cache when unusable), parsed on every
core when there are many, and the same shapes whichever way they were made (stored, parallel,
compiled sqlglot or pure)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import resource
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from dbtools.sqltext.families import (
    PARALLEL_FROM,
    Classifier,
    StatementShape,
    cache_namespace,
    compiled_sqlglot,
    shapes_of,
)
from dbtools.sqltext.parse_cache import ParseCache
from tests.helpers import PURE_SQLGLOT

TEXTS = (
    "SELECT id, name FROM public.travelers WHERE id = $1",
    "SELECT * FROM trip_requests t JOIN bookings b ON b.trip_request_id = t.id WHERE t.id IN ($1, $2)",
    "INSERT INTO bookings (trip_request_id, flight_offer_id) VALUES ($1, $2) "
    "ON CONFLICT (trip_request_id) DO UPDATE SET flight_offer_id = excluded.flight_offer_id",
    "WITH x AS (SELECT id FROM flight_offers WHERE price > $1) SELECT count(*) FROM x",
    "VACUUM (ANALYZE) public.bookings",  # kept unparsed
)


def many_texts(count: int) -> list[str]:
    """*count* distinct texts of every kind a report meets (deterministic)."""
    forms = (
        "SELECT c{a}, c{b} FROM public.t{t} WHERE c{a} = $1",
        "SELECT * FROM t{t} AS x JOIN t{u} y ON y.c{a} = x.id WHERE x.c{b} IN ($1,$2,$3)",
        "UPDATE public.t{t} SET c{a} = $1 WHERE id = $2 AND c{b} > now() - $3::interval",
        "INSERT INTO t{t} (c{a}, c{b}) VALUES ($1, $2) ON CONFLICT (c{a}) DO NOTHING",
        "WITH w AS (SELECT c{a} FROM t{t} WHERE c{b} > $1) SELECT count(*) FROM w",
        "DELETE FROM t{t} WHERE c{a} < $1 RETURNING c{b}",
        "VACUUM (ANALYZE) public.t{t}",
    )
    return [
        forms[i % len(forms)].format(t=i // len(forms), u=i % 13, a=i % 17, b=i % 11)
        for i in range(count)
    ]


def store(path: Path, **kwargs: Any) -> ParseCache:
    return ParseCache(path / "parses.sqlite3", namespace=cache_namespace(), **kwargs)


def classify(texts: list[str] | tuple[str, ...], cache: ParseCache) -> Classifier:
    classifier = Classifier(store=cache, workers=1)
    classifier.shapes(list(enumerate(texts, 1)))
    cache.close()
    return classifier


def as_json(shapes: list[StatementShape]) -> str:
    return json.dumps([dataclasses.asdict(shape) for shape in shapes])


def test_the_next_run_reads_every_shape_from_the_store(tmp_path: Path) -> None:
    first = classify(TEXTS, store(tmp_path))
    assert (first.parses, first.stored, store(tmp_path).entries()) == (5, 0, 5)
    statements = list(enumerate(TEXTS, 1))
    second = Classifier(store=store(tmp_path), workers=1)
    assert second.shapes(statements) == Classifier(workers=1).shapes(statements)
    assert (second.parses, second.stored) == (0, 5)


def test_a_changed_text_is_parsed_again_and_the_others_are_not(tmp_path: Path) -> None:
    classify(TEXTS, store(tmp_path))
    changed = (*TEXTS[:4], "VACUUM (ANALYZE) public.travelers")
    again = classify(changed, store(tmp_path))
    assert (again.parses, again.stored, store(tmp_path).entries()) == (1, 4, 6)


def test_another_sqlglot_or_rules_version_reads_nothing(tmp_path: Path) -> None:
    classify(TEXTS, store(tmp_path))
    other = ParseCache(tmp_path / "parses.sqlite3", namespace="shapes-v0;sqlglot-1.0.0-py")
    assert (classify(TEXTS, other).parses, classify(TEXTS, store(tmp_path)).parses) == (5, 0)


def test_one_text_under_several_queryids_is_parsed_once(tmp_path: Path) -> None:
    classifier = Classifier(workers=1)
    shapes = classifier.shapes([(1, TEXTS[0]), (2, TEXTS[0]), (3, TEXTS[1]), (4, TEXTS[0])])
    assert classifier.parses == 2 and shapes[0] is shapes[1] is shapes[3]


def test_the_store_keeps_the_newest_entries_up_to_its_bound(tmp_path: Path) -> None:
    classify(TEXTS, store(tmp_path, max_entries=3))
    assert store(tmp_path).entries() == 3
    # The two oldest went: the first two texts are parsed again, the last three read.
    again = classify(TEXTS, store(tmp_path, max_entries=3))
    assert (again.parses, again.stored) == (2, 3)


def _classify_in_another_process(directory: str, texts: list[str]) -> str:
    classifier = Classifier(store=store(Path(directory)), workers=1)
    return as_json(classifier.shapes(list(enumerate(texts, 1))))


def test_concurrent_runs_share_one_store(tmp_path: Path) -> None:
    texts = many_texts(300)
    halves = [texts[:200], texts[100:]]  # 100 texts in both: both runs may store them
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_classify_in_another_process, [str(tmp_path)] * 2, halves))
    expected = Classifier(workers=1).shapes(list(enumerate(texts, 1)))
    assert results == [as_json(expected[:200]), as_json(expected[100:])]
    assert store(tmp_path).entries() == 300  # unparsed texts (VACUUM) are stored too
    assert classify(texts, store(tmp_path)).parses == 0


def test_an_unusable_store_is_no_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "parses.sqlite3").write_text("not a database")
    with caplog.at_level(logging.WARNING, logger="dbtools"):
        classifier = classify(TEXTS, store(tmp_path))
    assert classifier.parses == 5
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"parse cache {tmp_path / 'parses.sqlite3'} not used"
    ]


def test_parallel_stored_and_serial_shapes_are_identical(tmp_path: Path) -> None:
    # Enough texts that the workers' share of the parsing is well above the CPU-time test below
    # (500 took the forked workers under 0.05 s once scrubbing skipped the scanner).
    texts = many_texts(PARALLEL_FROM * 4)
    statements = list(enumerate(texts, 1))
    serial = Classifier(cache=False, workers=1).shapes(statements)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    parallel_classifier = Classifier(store=store(tmp_path), workers=2)
    parallel = parallel_classifier.shapes(statements)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    stored = Classifier(store=store(tmp_path), workers=2)
    assert as_json(parallel) == as_json(serial) == as_json(stored.shapes(statements))
    assert (stored.parses, stored.stored) == (0, len(texts))
    # The parses ran in worker processes: their CPU time is the children's.
    assert parallel_classifier.workers_used == 2
    assert after.ru_utime - before.ru_utime > 0.05


CLASSIFY_WITH_PURE_SQLGLOT = (
    PURE_SQLGLOT
    + """
import dataclasses, json
from dbtools.sqltext.families import Classifier, compiled_sqlglot
texts = json.loads(sys.stdin.read())
shapes = Classifier(workers=1).shapes(list(enumerate(texts, 1)))
print(json.dumps({"compiled": compiled_sqlglot(),
                  "shapes": [dataclasses.asdict(s) for s in shapes]}))
"""
)


def test_compiled_sqlglot_is_used_where_installed_and_finds_what_pure_sqlglot_finds() -> None:
    try:
        importlib.metadata.distribution("sqlglotc")
        installed = True
    except importlib.metadata.PackageNotFoundError:
        installed = False
    assert compiled_sqlglot() is installed
    texts = many_texts(140)
    pure = subprocess.run(
        [sys.executable, "-c", CLASSIFY_WITH_PURE_SQLGLOT],
        input=json.dumps(texts), capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = json.loads(pure.stdout)
    assert found["compiled"] is False
    here = shapes_of(texts)
    assert found["shapes"] == json.loads(as_json(here))


@pytest.mark.parametrize(("load", "expected"), [(0.0, "all"), (1.5, 1), (40.0, 1)])
def test_parses_run_on_the_idle_cores(
    monkeypatch: pytest.MonkeyPatch, load: float, expected: int | str
) -> None:
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    want = cores if expected == "all" else expected
    if load == 1.5 and cores > 2:
        want = cores - 1  # one whole core idle at load 1.5 on 3+ cores
    classifier = Classifier()
    classifier.shapes(list(enumerate(many_texts(PARALLEL_FROM), 1)))
    assert classifier.workers_used == want
    small = Classifier()
    small.shapes(list(enumerate(many_texts(PARALLEL_FROM - 1), 1)))
    assert small.workers_used == 1  # too few to be worth a worker
