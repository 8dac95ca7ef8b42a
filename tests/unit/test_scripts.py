"""The set-up scripts: ./scripts/serve installs what the server needs, ./scripts/test adds
the test tools. Run on a copy of the scripts with a stand-in Python whose pip records
what it was asked to install."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for `python3 -m venv .venv`: a venv whose pip logs its arguments.
set -e
mkdir -p .venv/bin
printf '#!/usr/bin/env bash\\necho "$@" >> pip.log\\n' > .venv/bin/pip
printf '#!/usr/bin/env bash\\nexit 0\\n' > .venv/bin/python
chmod +x .venv/bin/pip .venv/bin/python
"""


def _copy(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "bootstrap", project / "scripts" / "bootstrap")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return project


def _bootstrap(project: Path, *args: str) -> list[str]:
    env = {**os.environ, "PYTHON": str(project.parent / "python3")}
    subprocess.run([str(project / "scripts" / "bootstrap"), *args], cwd=project, env=env, check=True)
    log = project / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def test_serving_installs_the_server_without_the_test_tools(tmp_path):
    project = _copy(tmp_path)
    installs = [line for line in _bootstrap(project) if line.startswith("install")]
    assert installs[-1].endswith("-e .") and "[test]" not in " ".join(installs), installs


def test_testing_installs_the_test_tools_and_then_serving_needs_nothing_more(tmp_path):
    project = _copy(tmp_path)
    assert _bootstrap(project, "test")[-1].endswith("-e .[test]")
    before = _bootstrap(project)
    assert _bootstrap(project) == before  # the server's needs are covered: nothing installed
