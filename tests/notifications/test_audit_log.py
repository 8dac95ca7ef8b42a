"""log.audit: one line per blob, manifest and tag call with the subject, the action, the
repository and the outcome (OpenShift's audit mode), refusals included."""

from __future__ import annotations

import asyncio

import httpx

from tests.support.http import push_image
from tests.support.logs import parse_logfmt
from tests.support.registries import AuthRegistry, start_registry


def audit_lines(registry: AuthRegistry, since: int) -> list[dict[str, str]]:
    registry.sync_log()
    found = [parse_logfmt(line) for line in registry.log_lines()[since:]]
    return [e for e in found if e.get("msg") == "audit"]


async def push_as(url: str, auth: tuple[str, str]) -> str:
    async with httpx.AsyncClient(base_url=url, auth=auth, timeout=30) as client:
        digest, _ = await push_image(client, "team/app", "v1")
        return digest


def test_audit_lines_name_subject_action_repository_and_outcome(tmp_path):
    for registry in start_registry(tmp_path / "okura", auth=True, env={"OKURA_LOG_AUDIT": "true"}):
        assert isinstance(registry, AuthRegistry)
        editor = registry.account("auditor", ("registry-editor", "team"))
        viewer = registry.account("watcher", ("registry-viewer", "team"))
        start = len(registry.log_lines())

        digest = asyncio.run(push_as(registry.url, editor.basic))
        with registry.http(viewer) as c:
            assert c.get(f"/v2/team/app/manifests/{digest}").status_code == 200
            assert c.get("/v2/team/app/tags/list").status_code == 200
            assert c.delete("/v2/team/app/manifests/v1").status_code == 403
        lines = audit_lines(registry, start)
        seen = {(e["subject"], e["action"], e["repository"], e["outcome"]) for e in lines}
        assert ("auditor", "push", "team/app", "allowed") in seen
        assert ("watcher", "pull", "team/app", "allowed") in seen
        assert ("watcher", "list", "team/app", "allowed") in seen
        assert ("watcher", "delete", "team/app", "denied") in seen
        manifest_put = [
            e for e in lines if e["method"] == "PUT" and "manifests" in e.get("reference", "") + "manifests"
        ]
        assert manifest_put and all(e["status"] for e in lines)
