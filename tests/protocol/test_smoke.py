from tests.support.digests import sha256
from tests.support.http import push_image


async def test_version_check(client):
    r = await client.get("/v2/")
    assert r.status_code == 200
    assert r.json() == {}
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_push_and_pull_image(client):
    digest, body = await push_image(client, "team/app", "v1", layers=2)
    r = await client.get("/v2/team/app/manifests/v1")
    assert r.status_code == 200
    assert r.content == body
    assert r.headers["Docker-Content-Digest"] == digest == sha256(body)
