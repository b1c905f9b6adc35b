"""The public API (``dbtools/__init__.py``): each command's entry point under one name, each
documented, each loaded on first use. Pure (no server)."""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dbtools
from tests.helpers import REPO

INIT = Path(dbtools.__file__)


def test_every_public_name_is_listed_once() -> None:
    assert sorted(dbtools.__all__) == sorted([*dbtools.API, "__version__"])


@pytest.mark.parametrize("name", sorted(dbtools.API))
def test_each_public_name_is_its_module_s_documented_entry_point(name: str) -> None:
    module, attribute = dbtools.API[name]
    value = getattr(dbtools, name)
    assert value is getattr(sys.modules[module], attribute)
    assert callable(value)
    docstring = inspect.getdoc(value) or ""
    assert len(docstring) > 40, f"{name} is not documented"
    said = re.search(rf"\b{name}\(", dbtools.__doc__ or "")
    assert said, f"the package docstring does not show {name} called"


def test_the_types_mypy_sees_are_the_names_loaded() -> None:
    """The ``TYPE_CHECKING`` imports name exactly the objects ``API`` loads at run time."""
    tree = ast.parse(INIT.read_text())
    guarded = next(
        n for n in tree.body if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)
    )
    imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in guarded.body if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }  # fmt: skip
    assert imported == dbtools.API


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'verify_all'"):
        dbtools.verify_all  # noqa: B018


def test_importing_dbtools_loads_none_of_them() -> None:
    """``import dbtools`` (the CLI's first import) loads no command and not the driver."""
    code = "import json, sys, dbtools; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert {m for m in loaded if m.startswith("dbtools")} == {"dbtools"}
    assert "psycopg" not in loaded
