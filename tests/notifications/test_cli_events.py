"""`okura events`: the event log and the endpoints' delivery state, printed by real `okura`
processes from an in-process app's database (SQLite file or PostgreSQL): tables, -n, --since,
--limit, distribution's events with -o, following the log while it grows, credentials kept out
of URLs, and a read-only command that never creates or migrates a database."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from datetime import timedelta

import asyncpg
import httpx
import pytest
import yaml

from registry import clock
from registry.cli import events as events_cli
from registry.metadata.schema import notification_cursors
from registry.model import events
from registry.notifications.envelope import event_id
from tests.support.backends import SQL_BACKENDS
from tests.support.http import push_image
from tests.support.postgres import create_database, drop_database
from tests.support.processes import okura_command, okura_env, okura_on

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)

HEADER = ["ID", "TIME", "ACTION", "REPOSITORY", "TAG", "DIGEST", "ACTOR"]
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
PASSWORD, TOKEN = "pw-51c9e0-secret", "tok-7d2a44-secret"
HOOK_URL = f"http://user:{PASSWORD}@127.0.0.1:9/hook?token={TOKEN}"


async def ok(app, *args: str) -> str:
    result = await okura_on(app, "events", *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def table(text: str) -> list[dict[str, str]]:
    """A printed table as one dict per row, cells cut at the header's column starts (so blank
    cells stay blank)."""
    header, *lines = text.splitlines()
    columns = list(re.finditer(r"\S+(?: \S+)*", header))  # names of two words: LAST SUCCESS
    names, starts = [c.group() for c in columns], [c.start() for c in columns]
    bounds = [*starts[1:], None]
    return [{n: line[s:e].strip() for n, s, e in zip(names, starts, bounds, strict=True)} for line in lines]


def registry_of(app):
    return app.app.state.runtime.registry


async def logged(app, namespace: str | None = None) -> list[events.LoggedEvent]:
    return await registry_of(app).db.read(events.after, 0, 10_000, namespace)


async def test_list_shows_pushes_oldest_first(app, client):
    first, _ = await push_image(client, "team/app", "v1")
    second, _ = await push_image(client, "team/app", "v2")
    out = await ok(app, "list")
    assert out.splitlines()[0].split() == HEADER
    rows = table(out)
    found = await logged(app)
    assert [int(r["ID"]) for r in rows] == [e.id for e in found] and len(rows) == 6
    assert all(RFC3339.fullmatch(r["TIME"]) and r["ACTION"] == "push" for r in rows)
    assert {r["REPOSITORY"] for r in rows} == {"team/app"} and all(r["ACTOR"] == "" for r in rows)
    manifests = [r for r in rows if r["TAG"]]
    assert [(r["TAG"], r["DIGEST"]) for r in manifests] == [("v1", first[:19]), ("v2", second[:19])]
    assert all(re.fullmatch(r"sha256:[0-9a-f]{12}", r["DIGEST"]) for r in rows)
    assert rows[2]["TAG"] == "v1" and rows[5]["TAG"] == "v2"  # blobs, then their manifest

    last_two = table(await ok(app, "list", "--limit", "2"))
    assert [int(r["ID"]) for r in last_two] == [e.id for e in found[-2:]]


async def test_reads_page_through_the_log_backwards_and_forwards(app, client, monkeypatch):
    """The listing's queries, in process with pages of 2: the newest N of a namespace whose
    events are spread out, everything after a point, and polling from a cursor."""
    monkeypatch.setattr(events_cli, "PAGE", 2)
    for repo in ("team/a", "other/b", "other/c", "team/d"):
        await push_image(client, repo, "v1")
    db, everything = registry_of(app).db, await logged(app)
    team = [e.id for e in everything if e.namespace == "team"]

    newest_team = await db.read(events_cli.listing, events_cli.Query("team", None, 4))
    assert [e.id for e in newest_team.found] == team[-4:]
    listed = await db.read(events_cli.listing, events_cli.Query(None, None, None))
    assert [e.id for e in listed.found] == [e.id for e in everything] and listed.top == everything[-1].id
    found, cursor, more = await db.read(events_cli.poll, everything[-3].id, None)
    assert ([e.id for e in found], cursor, more) == ([e.id for e in everything[-2:]], everything[-1].id, True)
    found, cursor, more = await db.read(events_cli.poll, everything[-1].id, "team")
    assert (found, cursor, more) == ([], everything[-1].id, False)


async def test_namespace_and_since(app, client, monkeypatch):
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() - timedelta(hours=1))
    await push_image(client, "old/app", "v1")
    monkeypatch.setattr(clock, "now", real_now)
    await push_image(client, "team/app", "v1")
    await push_image(client, "other/web", "v1")

    assert {r["REPOSITORY"] for r in table(await ok(app, "list", "-n", "other"))} == {"other/web"}
    assert len(table(await ok(app, "list"))) == 9
    recent = table(await ok(app, "list", "--since", "10m"))
    assert [r["REPOSITORY"] for r in recent] == ["team/app"] * 3 + ["other/web"] * 3
    assert {r["REPOSITORY"] for r in table(await ok(app, "list", "--since", "2h", "-n", "old"))} == {"old/app"}

    result = await okura_on(app, "events", "list", "-n", "nobody")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "No events in namespace nobody.\n")


async def test_output_is_distributions_events(app, client):
    digest, manifest = await push_image(client, "team/app", "v1")
    document = json.loads(await ok(app, "list", "-o", "json"))
    found = await logged(app)
    assert [e["id"] for e in document["events"]] == [event_id(e.id) for e in found]
    pushed = document["events"][-1]
    assert pushed["action"] == "push" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", pushed["timestamp"])
    target = pushed["target"]
    assert (target["repository"], target["digest"], target["tag"], target["size"]) == (
        "team/app",
        digest,
        "v1",
        len(manifest),
    )
    assert pushed["actor"] == {}
    assert pushed["request"]["method"] == "PUT" and pushed["request"]["useragent"].startswith("python-httpx")
    assert pushed["source"] == {"addr": found[-1].source["addr"], "instanceID": events.INSTANCE_ID}
    assert yaml.safe_load(await ok(app, "list", "-o", "yaml")) == document


async def test_follow_prints_events_appended_after_it_started(app, client):
    await push_image(client, "team/app", "v1")
    env = okura_env(OKURA_CONFIG_JSON=json.dumps(app.app.state.runtime.config.to_dict()))
    proc = await asyncio.create_subprocess_exec(
        *okura_command(), "events", "list", "-f", "-o", "json", "-n", "team",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:

        async def line() -> dict:
            return json.loads(await asyncio.wait_for(proc.stdout.readline(), timeout=15))

        assert [(await line())["action"] for _ in range(3)] == ["push"] * 3  # what was there: listed
        await push_image(client, "other/app", "v1")  # another namespace: not shown
        digest, _ = await push_image(client, "team/app", "v2")
        appended = [await line() for _ in range(3)]
        assert [e["target"]["repository"] for e in appended] == ["team/app"] * 3
        assert (appended[-1]["target"]["tag"], appended[-1]["target"]["digest"]) == ("v2", digest)
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the way to stop
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
        assert await proc.stderr.read() == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_endpoints_with_none_configured(app):
    result = await okura_on(app, "events", "endpoints")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "No endpoints configured.\n")
    assert json.loads(await ok(app, "endpoints", "-o", "json")) == []


async def test_endpoints_show_state_without_credentials(make_app):
    app = await make_app(
        notifications={
            "endpoints": [
                {"name": "ci", "url": HOOK_URL},
                {"name": "off", "url": "https://hooks.example/x", "format": "cloudevents", "disabled": True},
            ]
        }
    )
    reg = registry_of(app)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://registry") as client:
        await push_image(client, "team/app", "v1")
    newest = await reg.db.read(events.newest)
    error = f"ConnectError: cannot connect to {HOOK_URL} " + "x" * 100
    now = clock.now()
    row = {"endpoint": "ci", "cursor": newest - 2, "updated_at": now, "last_success_at": now - timedelta(minutes=5)}
    row |= {"last_error": error, "last_error_at": now, "failures": 3, "delivered": 7, "dropped": 0}
    await reg.db.write(lambda conn: conn.execute(notification_cursors.insert().values(**row)))

    result = await okura_on(app, "events", "endpoints")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    out = result.stdout
    assert re.split(r"\s{2,}", out.splitlines()[0]) == [
        "NAME", "URL", "FORMAT", "PENDING", "DELIVERED", "FAILURES", "LAST SUCCESS", "LAST ERROR",
    ]  # fmt: skip
    ci, off = table(out)
    assert (ci["NAME"], ci["URL"], ci["FORMAT"]) == ("ci", "http://127.0.0.1:9/hook", "distribution")
    assert (ci["PENDING"], ci["DELIVERED"], ci["FAILURES"], ci["LAST SUCCESS"]) == ("2", "7", "3", "5m ago")
    assert ci["LAST ERROR"].startswith("ConnectError: cannot connect to http://127.0.0.1:9/hook")
    assert len(ci["LAST ERROR"]) == 60 and ci["LAST ERROR"].endswith("...")
    assert (off["FORMAT"], off["PENDING"], off["LAST SUCCESS"], off["LAST ERROR"]) == ("disabled", "-", "never", "")

    document = await ok(app, "endpoints", "-o", "json")
    ci_json, off_json = json.loads(document)
    assert ci_json["url"] == "http://127.0.0.1:9/hook" and ci_json["pending"] == 2 and ci_json["cursor"] == newest - 2
    assert ci_json["lastError"].startswith("ConnectError: cannot connect to http://127.0.0.1:9/hook ")
    assert off_json["disabled"] is True and off_json["pending"] is None and off_json["format"] == "cloudevents"
    for text in (out, document, await ok(app, "endpoints", "-o", "yaml")):
        assert PASSWORD not in text and TOKEN not in text and "user:" not in text


async def test_a_missing_or_unmigrated_database_is_one_line_and_stays_untouched(backend, tmp_path):
    data_dir = tmp_path / "empty"
    config: dict = {"data_dir": str(data_dir)}
    pg_url = None
    if backend == "postgres":
        pg_url = await create_database("okura_events_ro")
        config["database"] = {"url": pg_url}
    try:
        for args in (["list"], ["list", "-f"], ["endpoints"]):
            result = await asyncio.to_thread(
                _run_okura, ["events", *args], okura_env(OKURA_CONFIG_JSON=json.dumps(config))
            )
            assert result.returncode == 1, (result.stdout, result.stderr)
            assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
            assert ("no database at" if pg_url is None else "has no schema") in result.stderr
        assert not data_dir.exists() or not any(data_dir.rglob("*.db"))
        if pg_url is not None:
            assert await _pg_tables(pg_url) == []
    finally:
        if pg_url is not None:
            await drop_database(pg_url)


def _run_okura(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*okura_command(), *args], env=env, capture_output=True, text=True, timeout=60)


async def _pg_tables(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [r["tablename"] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    finally:
        await conn.close()


async def test_bad_flags_exit_2(app):
    for args in (["list", "--since", "soon"], ["list", "--limit", "0"]):
        result = await okura_on(app, "events", *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.splitlines()[-1].startswith("okura events list: error: argument")
