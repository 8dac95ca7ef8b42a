"""The Kubernetes-style API (/apis/image.openshift.io/v1) over httpx: paths, content types,
objects to send, and the Warning header as client-go parses it."""

from __future__ import annotations

import re
from typing import Any

import httpx

API = "/apis/image.openshift.io/v1"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"  # what kubectl get asks for
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
APPLY = {"Content-Type": "application/apply-patch+yaml"}
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def streams(namespace: str, name: str | None = None) -> str:
    return f"{API}/namespaces/{namespace}/imagestreams" + (f"/{name}" if name else "")


def istags(namespace: str, name: str | None = None) -> str:
    return f"{API}/namespaces/{namespace}/imagestreamtags" + (f"/{name}" if name else "")


def isimage(namespace: str, name: str) -> str:
    return f"{API}/namespaces/{namespace}/imagestreamimages/{name}"


def tag_ref(tag: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    """A spec tag pointing at `name` (STREAM:TAG, TAG, STREAM@DIGEST) of kind `kind`."""
    source = {"kind": kind, "name": name, **({"namespace": namespace} if namespace else {})}
    return {"name": tag, "from": source}


def stream_body(name: str, *, labels=None, annotations=None, tags=None, **metadata: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **metadata}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    body: dict[str, Any] = {"apiVersion": "image.openshift.io/v1", "kind": "ImageStream", "metadata": meta}
    if tags is not None:
        body["spec"] = {"tags": tags}
    return body


def istag_body(name: str, kind: str, source: str, namespace: str | None = None, **metadata: Any) -> dict[str, Any]:
    """An ImageStreamTag STREAM:TAG pointing at `source`."""
    source_ref = {"kind": kind, "name": source, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "image.openshift.io/v1",
        "kind": "ImageStreamTag",
        "metadata": {"name": name, **metadata},
        "tag": {"from": source_ref},
    }


async def get_ok(client: httpx.AsyncClient, path: str, **kwargs: Any) -> dict[str, Any]:
    r = await client.get(path, **kwargs)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    assert r.headers["content-type"].split(";")[0] == "application/json", r.headers
    return r.json()


async def create_stream(client: httpx.AsyncClient, namespace: str, name: str, **body: Any) -> dict[str, Any]:
    r = await client.post(streams(namespace), json=stream_body(name, **body))
    assert r.status_code == 201, r.text
    return r.json()


def rv(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["resourceVersion"])


def history(stream: dict[str, Any]) -> dict[str, list[str]]:
    """Each status tag's images, newest first."""
    return {t["tag"]: [i["image"] for i in t["items"]] for t in stream["status"]["tags"]}


def names(listing: dict[str, Any]) -> list[str]:
    return [item["metadata"]["name"] for item in listing["items"]]


def parse_warnings(header: str) -> list[str]:
    """The texts of a Warning header (RFC 7234 section 5.5: `299 - "text"`, comma separated,
    `\\"` and `\\\\` escaped inside the quotes), parsed strictly as client-go does; a header
    that does not parse fails the test."""
    texts, rest = [], header.strip()
    while rest:
        m = re.match(r'(\d{3}) (\S+) "((?:[^"\\]|\\.)*)"(?: "[^"]*")?\s*(?:,\s*|$)', rest)
        assert m, f"malformed Warning header at {rest!r} (of {header!r})"
        assert m.group(1) == "299", header
        texts.append(re.sub(r"\\(.)", r"\1", m.group(3)))
        rest = rest[m.end() :]
    return texts
