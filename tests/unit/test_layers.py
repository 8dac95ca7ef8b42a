"""The import contracts in pyproject.toml hold, and would catch a cycle or a layer break
(checked on a copy of the sources with one bad import added)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def _lint(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([LINT, "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=120)


def _copy(tmp_path: Path) -> Path:
    project = tmp_path / "src"
    for package in ("registry", "auth", "storage"):
        shutil.copytree(ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def test_the_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "bad_import", "broken"),
    [
        ("registry/metadata/db.py", "import registry.api.routing", "HTTP -> model"),  # a layer broken upward
        ("registry/model/blobs.py", "import auth.store", "HTTP -> model"),  # the model reaching into auth
        ("storage/base.py", "import registry.errors", "Storage drivers"),
        ("registry/units.py", "import registry.model.blobs", "Shared leaf modules"),
        ("registry/errors.py", "import registry.names", "No import cycles"),  # names imports errors
    ],
)
def test_a_bad_import_breaks_a_contract(tmp_path, module, bad_import, broken):
    project = _copy(tmp_path)
    path = project / module
    path.write_text(path.read_text() + f"\n{bad_import}  # noqa\n")
    result = _lint(project)
    assert result.returncode != 0, result.stdout
    assert any(broken in line and "BROKEN" in line for line in result.stdout.splitlines()), result.stdout
