"""`okura tag` as `oc tag`: a tag set to the image another tag points at now, to an image by
digest (a rollback to an earlier history item), or made to follow another tag (--alias); -d
deletes tags. Each move is a history item, pullable under /v2/ at once, and a new
resourceVersion, as the same change made through the API would be."""

from __future__ import annotations

import pytest
import pytest_asyncio

from tests.support.backends import SQL_BACKENDS
from tests.support.http import push_image
from tests.support.processes import okura_on

API = "/apis/image.openshift.io/v1"

# Tags are metadata: blob storage plays no part.
pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)


@pytest_asyncio.fixture
async def pushed(app, client) -> dict[str, str]:
    v1, _ = await push_image(client, "team/app", "v1")
    v2, _ = await push_image(client, "team/app", "v2")
    return {"v1": v1, "v2": v2}


async def tag(app, *args: str) -> str:
    result = await okura_on(app, "tag", *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


async def served_digest(client, repo: str, tag_name: str) -> str | None:
    r = await client.head(f"/v2/{repo}/manifests/{tag_name}")
    return r.headers["Docker-Content-Digest"] if r.status_code == 200 else None


async def stream(client, namespace: str, name: str) -> dict:
    r = await client.get(f"{API}/namespaces/{namespace}/imagestreams/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def history(obj: dict, tag_name: str) -> list[str]:
    for t in obj["status"]["tags"]:
        if t["tag"] == tag_name:
            return [item["image"] for item in t["items"]]
    return []


async def test_rolling_a_tag_back_is_one_command_and_recorded(app, client, pushed):
    out = await tag(app, "team/app:v2", "team/app:prod")
    assert out.strip() == f"Tag team/app:prod set to team/app@{pushed['v2']}."
    assert await served_digest(client, "team/app", "prod") == pushed["v2"]
    before = await stream(client, "team", "app")

    # Roll prod back to the image it pointed at before (here: v1's), by digest.
    await tag(app, f"team/app@{pushed['v1']}", "team/app:prod")
    assert await served_digest(client, "team/app", "prod") == pushed["v1"]
    after = await stream(client, "team", "app")
    assert history(after, "prod") == [pushed["v1"], pushed["v2"]]  # newest first: the move is recorded
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    spec = {t["name"]: t for t in after["spec"]["tags"]}
    assert spec["prod"]["from"] == {"kind": "ImageStreamImage", "name": f"app@{pushed['v1']}", "namespace": "team"}


async def test_a_tag_without_alias_keeps_the_image_the_source_had(app, client, pushed):
    await tag(app, "-n", "team", "app:v1", "app:stable", "other/copy:stable")
    assert await served_digest(client, "team/app", "stable") == pushed["v1"]
    assert await served_digest(client, "other/copy", "stable") == pushed["v1"]  # across namespaces
    await push_image(client, "team/app", "v1")  # a new image under v1
    assert await served_digest(client, "team/app", "stable") == pushed["v1"]


async def test_an_alias_follows_its_source_tag(app, client, pushed):
    out = await tag(app, "--alias", "team/app:v2", "team/app:latest")
    assert out.strip() == "Tag team/app:latest set up to track team/app:v2."
    assert await served_digest(client, "team/app", "latest") == pushed["v2"]
    newer, _ = await push_image(client, "team/app", "v2")
    assert await served_digest(client, "team/app", "latest") == newer
    assert history(await stream(client, "team", "app"), "latest") == [newer, pushed["v2"]]


async def test_delete_removes_the_tags_and_their_history(app, client, pushed):
    await tag(app, "team/app:v1", "team/app:a", "team/app:b")
    out = await tag(app, "-d", "team/app:a", "team/app:b")
    assert out.splitlines() == ["Deleted tag team/app:a.", "Deleted tag team/app:b."]
    for name in ("a", "b"):
        assert await served_digest(client, "team/app", name) is None
        assert history(await stream(client, "team", "app"), name) == []
    assert await served_digest(client, "team/app", "v1") == pushed["v1"]  # the image stays


async def test_mistakes_are_one_line_errors_and_change_nothing(app, client, pushed):
    before = await stream(client, "team", "app")
    cases = [
        (["team/app:nope", "team/app:x"], "points at no image yet", 1),
        (["team/missing:v1", "team/app:x"], "not found", 1),
        ([f"team/app@sha256:{'0' * 64}", "team/app:x"], "", 1),
        (["app:v1", "team/app:x"], "names no namespace", 2),
        (["team/app:v1", "team/app@sha256:" + "1" * 64], "a destination is a tag", 2),
        (["team/app:v1", "team/App:x"], "not a valid image stream name", 2),
        (["team/app:v1", "team/app:bad tag"], "not a valid tag", 2),
        (["team/app:v1"], "at least one destination", 2),
        (["team/app:v1", "team/app:v1"], "cannot point at itself", 2),
        (["--alias", f"team/app@{pushed['v1']}", "team/app:x"], "--alias follows a tag", 2),
        (["-d", "team/app:never"], "no such tag", 1),
        (["-d", "--alias", "team/app:v1"], "do not go together", 2),
    ]
    for args, message, status in cases:
        result = await okura_on(app, "tag", *args)
        assert result.returncode == status, (args, result.stdout, result.stderr)
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("okura tag: error: "), (args, result.stderr)
        assert message in lines[0], (args, lines[0])
    after = await stream(client, "team", "app")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
