"""scripts/measure_api.py, small: it runs end to end on the embedded default (its own `okura
serve`, SQLite + filesystem), reads the watch event of every push, writes the JSON report,
and fails loudly when an event never arrives. No timing thresholds: the numbers are for people."""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "measure_api.py"
STATS = {"n", "min", "mean", "p50", "p90", "p99", "max"}
LISTS = {"namespace_json", "namespace_table", "all_namespaces_json", "namespace_paged_limit_20"}


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, cwd=SCRIPT.parent.parent
    )


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_end_to_end_on_the_embedded_default(tmp_path: Path) -> None:
    out = tmp_path / "measure.json"
    result = run_script("--pushes", "10", "--streams", "50", "--lists", "3", "--page-limit", "20", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "watch: 10 pushes to bench/app" in result.stdout, result.stdout
    assert "list: 50 streams in bench-list" in result.stdout, result.stdout

    report = json.loads(out.read_text())
    assert {"command", "commit", "date", "backend", "host", "urls", "watch", "list"} <= set(report)
    assert "measure_api.py" in report["command"] and report["commit"]
    assert report["backend"]["database"] == "sqlite" and report["backend"]["started"] is True

    watch = report["watch"]
    assert watch["pushes"] == watch["events_matched"] == 10  # every push's event was read
    assert watch["events_read"] >= 10
    assert len(watch["event_after_response_samples_ms"]) == 10
    for key in ("event_after_response_ms", "event_after_request_ms", "manifest_put_ms", "push_ms"):
        assert set(watch[key]) == STATS and watch[key]["n"] == 10, (key, watch[key])
    # The event may be read just before the PUT's response (a negative latency), never before its request.
    for key in ("event_after_request_ms", "manifest_put_ms", "push_ms"):
        assert all(positive(v) for v in watch[key].values()), (key, watch[key])

    lists = report["list"]
    assert lists["streams"] == 50 and lists["create_ms"]["n"] == 50 and positive(lists["create_total_s"])
    assert set(lists["lists"]) == LISTS
    for name, numbers in lists["lists"].items():
        assert numbers["n"] == 3 and numbers["items"] >= 50, (name, numbers)
        assert all(positive(numbers[k]) for k in ("p50_ms", "p99_ms", "max_ms", "bytes")), (name, numbers)
    assert lists["lists"]["namespace_paged_limit_20"]["requests"] == 3


def load_script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("measure_api", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "measure_api", module)  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def signal_handlers() -> Iterator[None]:
    """main() installs SIGTERM and SIGINT handlers: pytest's are put back."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_missing_event_fails_the_run(monkeypatch, capsys, signal_handlers) -> None:
    measure_api = load_script(monkeypatch)
    monkeypatch.setattr(measure_api.Watcher, "read", lambda self, event, at: None)  # a watch that sees nothing
    assert measure_api.main(["--pushes", "2", "--streams", "0", "--event-timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert "push 1/2: no watch event for bench/app:t0" in err, err
