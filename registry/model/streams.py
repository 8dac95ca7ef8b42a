"""Image streams as API objects (image.openshift.io/v1 ImageStream, ImageStreamTag).

A repository `<namespace>/<name>` is the stream `name` in `namespace`. Its registry tags
and their history (tag_events) are the stream's status; its spec holds the tags users
manage (TagReferences): a tag pointing at another stream's tag or image is resolved at
once (the image becomes pullable here, and the tag gets a history item); a tag pointing at
a tag of the same stream follows it (`oc tag --alias`); DockerImage tags are stored for
the importer. Every write records its changes in the change log in the same transaction,
so resourceVersions and watches see pushes, API writes and prunes alike.

Returns frozen dataclasses; the API renders them (registry/api/objects.py).
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, bindparam, delete, select, update

from registry.errors import ResourceAlreadyExists, ResourceConflict, ResourceInvalid, ResourceNotFound
from registry.kube.meta import new_uid
from registry.metadata.db import Database, as_utc, utcnow
from registry.metadata.schema import (
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    repository_blobs,
    tag_events,
    tags,
)
from registry.model import changes, events
from registry.model.changes import ADDED, DELETED, MODIFIED, Change
from registry.model.context import Registry
from registry.model.images import is_digest_name
from registry.names import NAME_COMPONENT, NAME_MAX, TAG_RE, is_digest

GROUP = "image.openshift.io"
STREAMS = "imagestreams"
STREAM_TAGS = "imagestreamtags"
IMAGES = "images"
FROM_KINDS = ("ImageStreamTag", "ImageStreamImage", "DockerImage")
IMPORT_MODES = ("Legacy", "PreserveOriginal")
REFERENCE_POLICIES = ("Source", "Local")
_NAMESPACE_RE = re.compile(NAME_COMPONENT)
_STREAM_NAME_RE = re.compile(rf"{NAME_COMPONENT}(?:/{NAME_COMPONENT})*")

MayRead = Callable[[str], Awaitable[bool]]


@dataclass(frozen=True)
class TagReference:
    """A tag of the spec (OpenShift's TagReference)."""

    name: str
    from_kind: str | None = None  # ImageStreamTag, ImageStreamImage, DockerImage
    from_name: str | None = None
    from_namespace: str | None = None
    reference: bool = False  # only points at its source, never imported
    generation: int | None = None  # the stream generation that last changed it
    insecure: bool = False
    scheduled: bool = False
    import_mode: str = "Legacy"
    reference_policy: str = "Source"
    annotations: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "from_kind": self.from_kind,
            "from_name": self.from_name,
            "from_namespace": self.from_namespace,
            "reference": self.reference,
            "generation": self.generation,
            "insecure": self.insecure,
            "scheduled": self.scheduled,
            "import_mode": self.import_mode,
            "reference_policy": self.reference_policy,
            "annotations": dict(self.annotations) if self.annotations else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TagReference:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})

    def same_intent(self, other: TagReference) -> bool:
        """Whether two spec tags ask for the same thing (generation aside)."""
        return replace(self, generation=None) == replace(other, generation=None)


@dataclass(frozen=True)
class TagItem:
    """One image a tag has pointed at (a TagEvent)."""

    created: datetime
    image: str  # the manifest digest
    generation: int
    reference: str | None = None  # imported: the upstream pull spec by digest


@dataclass(frozen=True)
class TagCondition:
    """A tag's ImportSuccess condition: the last import of it failed (OpenShift keeps only
    failures; a successful import clears it)."""

    reason: str
    message: str
    generation: int
    last_transition: datetime
    type: str = "ImportSuccess"
    status: str = "False"

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "message": self.message,
            "generation": self.generation,
            "last_transition": self.last_transition.isoformat(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TagCondition:
        return cls(
            str(data["reason"]),
            str(data["message"]),
            int(data["generation"]),
            as_utc(datetime.fromisoformat(data["last_transition"])),
        )


@dataclass(frozen=True)
class StatusTag:
    tag: str
    items: tuple[TagItem, ...]  # newest first: items[0] is current
    conditions: tuple[TagCondition, ...] = ()

    def observed_generation(self) -> int:
        """The spec generation this tag's status answers: its current item's or its failed
        import's, whichever is newer (a failure counts, so a failing tag is not retried in a
        loop)."""
        return max([*(i.generation for i in self.items[:1]), *(c.generation for c in self.conditions), 0])


@dataclass(frozen=True)
class Stream:
    id: int
    namespace: str
    name: str
    uid: str
    resource_version: int
    generation: int
    created: datetime
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    spec_tags: tuple[TagReference, ...]
    lookup_local: bool
    status_tags: tuple[StatusTag, ...]

    @property
    def repository(self) -> str:
        return f"{self.namespace}/{self.name}"

    def spec_tag(self, tag: str) -> TagReference | None:
        return next((t for t in self.spec_tags if t.name == tag), None)

    def status_tag(self, tag: str) -> StatusTag | None:
        return next((t for t in self.status_tags if t.tag == tag), None)

    def updated(self) -> datetime | None:
        return max((t.items[0].created for t in self.status_tags if t.items), default=None)


@dataclass(frozen=True)
class StreamEdit:
    """What a create or an update of a stream sets (its metadata and spec)."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    spec_tags: tuple[TagReference, ...] = ()
    lookup_local: bool = False


def split_repository(repo: str) -> tuple[str, str] | None:
    namespace, sep, name = repo.partition("/")
    return (namespace, name) if sep and name else None


def valid_stream_name(namespace: str, name: str) -> bool:
    repo = f"{namespace}/{name}"
    return bool(_NAMESPACE_RE.fullmatch(namespace)) and bool(_STREAM_NAME_RE.fullmatch(name)) and len(repo) <= NAME_MAX


# -- reading ---------------------------------------------------------------------------------


_BATCH = 500
# Statements of every push, built once (building one costs more than running it on SQLite).
_STREAM_BY_NAME = select(
    repositories.c.id, repositories.c.deleted_at, repositories.c.generation, repositories.c.spec
).where(repositories.c.name == bindparam("repo"))
_REPO_ID = select(repositories.c.id).where(repositories.c.name == bindparam("repo"))
_TAG_TARGET = select(tags.c.manifest_id).where(
    tags.c.repository_id == bindparam("repo_id"), tags.c.name == bindparam("tag")
)
_INSERT_TAG_EVENT = tag_events.insert()
_SPEC = select(repositories.c.generation, repositories.c.spec).where(repositories.c.id == bindparam("repo_id"))
_STAMP_STREAM = (
    update(repositories).where(repositories.c.id == bindparam("repo_id")).values(resource_version=bindparam("rv"))
)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), _BATCH):
        yield ids[i : i + _BATCH]


def _stream_rows(conn: Connection, namespace: str | None, name: str | None) -> list[Any]:
    query = select(repositories).where(repositories.c.deleted_at.is_(None))
    if namespace is not None and name is not None:
        query = query.where(repositories.c.name == f"{namespace}/{name}")
    elif namespace is not None:
        query = query.where(repositories.c.name.startswith(f"{namespace}/", autoescape=True))
    else:
        query = query.where(repositories.c.name.contains("/"))
    return list(conn.execute(query))


def load_streams(conn: Connection, namespace: str | None = None, name: str | None = None) -> list[Stream]:
    """The streams of one namespace (or all), or one stream, sorted by namespace and name."""
    rows = [r for r in _stream_rows(conn, namespace, name) if split_repository(r.name)]
    current: dict[int, dict[str, str]] = defaultdict(dict)
    history: dict[int, dict[str, list[TagItem]]] = defaultdict(lambda: defaultdict(list))
    for ids in _chunks([r.id for r in rows]):
        for row in conn.execute(
            select(tags.c.repository_id, tags.c.name, manifests.c.digest)
            .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
            .where(tags.c.repository_id.in_(ids))
        ):
            current[row.repository_id][row.name] = row.digest
        for row in conn.execute(
            select(
                tag_events.c.repository_id,
                tag_events.c.tag,
                tag_events.c.digest,
                tag_events.c.created_at,
                tag_events.c.generation,
                tag_events.c.reference,
            )
            .where(tag_events.c.repository_id.in_(ids))
            .order_by(tag_events.c.id.desc())
        ):
            item = TagItem(as_utc(row.created_at), row.digest, row.generation, row.reference)
            history[row.repository_id][row.tag].append(item)
    streams = []
    for r in rows:
        namespace_, name_ = split_repository(r.name)  # type: ignore[misc]
        spec = r.spec or {}
        conditions = {
            tag: (TagCondition.from_json(c),) for tag, c in (r.tag_conditions or {}).items() if isinstance(c, dict)
        }
        status = tuple(
            StatusTag(
                tag,
                tuple(history[r.id].get(tag, ())) or (TagItem(as_utc(r.created_at), digest, r.generation),),
                conditions.get(tag, ()),
            )
            for tag, digest in current[r.id].items()
        )
        # A tag whose first import failed has a condition and no image yet.
        status += tuple(StatusTag(tag, (), c) for tag, c in conditions.items() if tag not in current[r.id])
        status = tuple(sorted(status, key=lambda t: t.tag))
        streams.append(
            Stream(
                id=r.id,
                namespace=namespace_,
                name=name_,
                uid=r.uid,
                resource_version=r.resource_version,
                generation=r.generation,
                created=as_utc(r.created_at),
                labels=r.labels or {},
                annotations=r.annotations or {},
                spec_tags=tuple(TagReference.from_json(t) for t in spec.get("tags", [])),
                lookup_local=bool(spec.get("lookup_local", False)),
                status_tags=status,
            )
        )
    streams.sort(key=lambda s: (s.namespace, s.name))
    return streams


def _one(conn: Connection, namespace: str, name: str) -> Stream:
    found = load_streams(conn, namespace, name) if valid_stream_name(namespace, name) else []
    if not found:
        raise ResourceNotFound(STREAMS, GROUP, name)
    return found[0]


async def get_stream(reg: Registry, namespace: str, name: str) -> Stream:
    return await reg.db.read(_one, namespace, name)


async def list_streams(reg: Registry, namespace: str | None = None) -> tuple[list[Stream], int]:
    """The streams and the resourceVersion of the list (watch from it to follow changes)."""

    def run(conn: Connection) -> tuple[list[Stream], int]:
        return load_streams(conn, namespace), changes.latest(conn)

    return await reg.db.read(run)


async def namespaces(reg: Registry) -> tuple[list[tuple[str, datetime]], int]:
    """Each namespace that holds a stream, with when its first stream was created, and the
    resourceVersion of the answer."""

    def run(conn: Connection) -> tuple[list[tuple[str, datetime]], int]:
        rows = conn.execute(
            select(repositories.c.name, repositories.c.created_at).where(repositories.c.deleted_at.is_(None))
        )
        first: dict[str, datetime] = {}
        for name, created in rows:
            namespace = name.partition("/")[0]
            created = as_utc(created)
            if namespace not in first or created < first[namespace]:
                first[namespace] = created
        return sorted(first.items()), changes.latest(conn)

    return await reg.db.read(run)


async def streams_by_name(reg: Registry, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Stream]:
    """Several streams at once (a watch renders the objects its changes name)."""

    def run(conn: Connection) -> dict[tuple[str, str], Stream]:
        found: dict[tuple[str, str], Stream] = {}
        for namespace in {ns for ns, _ in keys}:
            for s in load_streams(conn, namespace):
                if (s.namespace, s.name) in keys:
                    found[(s.namespace, s.name)] = s
        return found

    return await reg.db.read(run)


# -- the stream a write needs ----------------------------------------------------------------


class EnsuredStream(NamedTuple):
    id: int
    created: bool  # a new stream: record it with `stream_added`
    generation: int
    spec_tags: list[TagReference]


def ensure_stream(db: Database, conn: Connection, repo: str) -> EnsuredStream:
    """The repository inside a write transaction, created (or a deleted stream brought back)
    if needed: its id, whether it is new, its generation and spec tags."""
    row = conn.execute(_STREAM_BY_NAME, {"repo": repo}).first()
    if row is not None and row.deleted_at is None:
        return EnsuredStream(row.id, False, row.generation, _spec_tags(row.spec))
    now = utcnow()
    if row is not None:
        conn.execute(
            update(repositories)
            .where(repositories.c.id == row.id)
            .values(
                deleted_at=None,
                uid=new_uid(),
                generation=1,
                labels=None,
                annotations=None,
                spec=None,
                tag_conditions=None,
                imported_at=None,
                created_at=now,
            )
        )
        return EnsuredStream(row.id, True, 1, [])
    conn.execute(db.insert_ignore(repositories, "name"), {"name": repo, "created_at": now, "uid": new_uid()})
    repo_id = conn.execute(_REPO_ID, {"repo": repo}).scalar_one()
    return EnsuredStream(repo_id, True, 1, [])


def stream_added(repo: str) -> Change | None:
    parts = split_repository(repo)
    return Change(STREAMS, parts[0], parts[1], ADDED) if parts else None


def stream_changed(repo: str) -> Change | None:
    parts = split_repository(repo)
    return Change(STREAMS, parts[0], parts[1], MODIFIED) if parts else None


def tag_changed(repo: str, tag: str, type_: str = MODIFIED, snapshot: dict[str, Any] | None = None) -> Change | None:
    parts = split_repository(repo)
    return Change(STREAM_TAGS, parts[0], f"{parts[1]}:{tag}", type_, snapshot) if parts else None


def record_and_stamp(
    db: Database,
    conn: Connection,
    repo_id: int,
    entries: Sequence[Change | None],
    explicit: Sequence[events.Event] | None = None,
) -> None:
    """Append the changes (at the end of the transaction) and give the stream the
    resourceVersion of its newest one. The events notifications deliver go with them:
    `explicit` ones (a push says what was pushed), else those the tag changes imply (a tag
    moved by the API, `okura tag` or an import is a push of that tag; a deleted tag or stream
    a delete)."""
    kept = [e for e in entries if e is not None]
    events.append(db, conn, explicit if explicit is not None else _implied_events(conn, repo_id, kept))
    if not kept:
        return
    ids = changes.record(db, conn, kept)
    conn.execute(_STAMP_STREAM, {"repo_id": repo_id, "rv": max(ids)})


_TAG_TARGET_DETAIL = (
    select(manifests.c.digest, manifests.c.media_type, manifests.c.size, manifests.c.upstream)
    .select_from(tags.join(manifests, manifests.c.id == tags.c.manifest_id))
    .where(tags.c.repository_id == bindparam("repo_id"), tags.c.name == bindparam("tag"))
)


def _implied_events(conn: Connection, repo_id: int, entries: Sequence[Change]) -> list[events.Event]:
    found: list[events.Event] = []
    seen: set[tuple[str, str | None, str, bool]] = set()
    for change in entries:
        key = (change.resource, change.namespace, change.name, change.type == DELETED)
        if key in seen:  # one tag changed twice in one write (its spec and its image) is one event
            continue
        seen.add(key)
        if change.resource == STREAMS and change.type == DELETED:
            found.append(events.Event(events.DELETE, f"{change.namespace}/{change.name}"))
        if change.resource != STREAM_TAGS:
            continue
        stream, _, tag = change.name.rpartition(":")
        repo = f"{change.namespace}/{stream}"
        if change.type == DELETED:
            found.append(events.Event(events.DELETE, repo, tag=tag))
            continue
        row = conn.execute(_TAG_TARGET_DETAIL, {"repo_id": repo_id, "tag": tag}).first()
        if row is not None:  # a spec tag not imported yet points at nothing: no event
            found.append(
                events.Event(events.PUSH, repo, row.media_type, row.digest, row.size, tag, upstream=row.upstream)
            )
    return found


# -- resolving what spec tags point at -------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The image a spec tag is to point at, found before the write."""

    tag: str
    repository: str
    digest: str


def _invalid(namespace: str, name: str, problems: list[tuple[str, str]]) -> ResourceInvalid:
    # As the API server words it: the Kind in details, each cause's message without its field.
    causes = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in problems]
    message = f'ImageStream.{GROUP} "{name}" is invalid: ' + "; ".join(f"{f}: {m}" for f, m in problems)
    return ResourceInvalid(message, kind="ImageStream", group=GROUP, name=name, causes=causes)


def _parse_from(ref: TagReference, namespace: str, stream: str) -> tuple[str, str, str] | str:
    """(source namespace, source stream, tag or digest), or a message saying what is wrong."""
    source_ns = ref.from_namespace or namespace
    name = ref.from_name or ""
    if ref.from_kind == "ImageStreamTag":
        other, sep, tag = name.rpartition(":")
        if not sep:
            other, tag = stream, name
        if not TAG_RE.fullmatch(tag) or (other and not valid_stream_name(source_ns, other)):
            return f"{name!r} must be TAG or STREAM:TAG"
        return source_ns, other or stream, tag
    other, sep, digest = name.rpartition("@")
    if not sep:
        other, digest = stream, name
    if not is_digest_name(digest) or (other and not valid_stream_name(source_ns, other)):
        return f"{name!r} must be DIGEST or STREAM@DIGEST"
    return source_ns, other or stream, digest


def find_cycle(refs: Sequence[TagReference], namespace: str, stream: str) -> tuple[int, str] | None:
    """The first spec tag (its index) that points, through tags of the same stream, into a
    cycle, and a message naming it; None when there is none. `refs` is a whole spec."""
    links: dict[str, str] = {}
    for ref in refs:
        if ref.from_kind == "ImageStreamTag":
            where = _parse_from(ref, namespace, stream)
            if not isinstance(where, str) and where[:2] == (namespace, stream):
                links[ref.name] = where[2]
    for i, ref in enumerate(refs):
        path = [ref.name]
        target = links.get(ref.name)
        while target is not None:
            if target in path:
                if path == [target]:
                    return i, "a tag cannot point at itself"
                return i, "tags refer to each other in a cycle: " + " -> ".join([*path, target])
            path.append(target)
            target = links.get(target)
    return None


def _locate(conn: Connection, repo: str, reference: str) -> str | None:
    """The digest a tag of `repo` points at, or `reference` itself if it is a digest there."""
    if is_digest(reference):
        query = (
            select(manifests.c.digest)
            .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
            .where(repositories.c.name == repo, manifests.c.digest == reference)
        )
    else:
        query = (
            select(manifests.c.digest)
            .select_from(
                tags.join(manifests, manifests.c.id == tags.c.manifest_id).join(
                    repositories, repositories.c.id == tags.c.repository_id
                )
            )
            .where(repositories.c.name == repo, tags.c.name == reference)
        )
    return conn.execute(query.where(repositories.c.deleted_at.is_(None))).scalar()


async def resolve_sources(
    reg: Registry, namespace: str, stream: str, refs: Sequence[TagReference], may_read: MayRead | None
) -> list[Source]:
    """The images the ImageStreamTag and ImageStreamImage spec tags point at now. Tags of the
    same stream may point at each other (followed; a cycle is invalid); an image in another
    stream needs the caller's pull permission there. Raises Invalid naming each bad tag."""
    repo = f"{namespace}/{stream}"
    problems: list[tuple[str, str]] = []
    parsed: dict[str, tuple[str, str, str]] = {}
    for i, ref in enumerate(refs):
        if ref.from_kind in ("ImageStreamTag", "ImageStreamImage"):
            where = _parse_from(ref, namespace, stream)
            if isinstance(where, str):
                problems.append((f"spec.tags[{i}].from.name", where))
            else:
                parsed[ref.name] = where
    if problems:
        raise _invalid(namespace, stream, problems)

    found = find_cycle(refs, namespace, stream)
    if found is not None:
        raise _invalid(namespace, stream, [(f"spec.tags[{found[0]}].from", found[1])])

    sources: list[Source] = []
    index = {r.name: i for i, r in enumerate(refs)}
    for tag, (source_ns, source_stream, reference) in parsed.items():
        # Follow tags of this stream that are themselves spec tags being set now (no cycles:
        # refused above).
        seen = {tag}
        while source_ns == namespace and source_stream == stream and reference in parsed and reference not in seen:
            seen.add(reference)
            source_ns, source_stream, reference = parsed[reference]
        source_repo = f"{source_ns}/{source_stream}"
        if source_repo != repo and may_read is not None and not await may_read(source_repo):
            problems.append((f"spec.tags[{index[tag]}].from", f"no permission to pull from {source_repo}"))
            continue
        digest = await reg.db.read(_locate, source_repo, reference)
        if digest is None:
            what = "imagestreamimage" if is_digest(reference) else "imagestreamtag"
            sep = "@" if is_digest(reference) else ":"
            problems.append(
                (f"spec.tags[{index[tag]}].from.name", f'{what}.{GROUP} "{source_stream}{sep}{reference}" not found')
            )
            continue
        sources.append(Source(tag, source_repo, digest))
    if problems:
        raise _invalid(namespace, stream, problems)
    return sources


# -- pointing tags at images ---------------------------------------------------------------------


def _manifest_id(conn: Connection, repo_id: int, digest: str) -> int | None:
    return conn.execute(
        select(manifests.c.id).where(manifests.c.repository_id == repo_id, manifests.c.digest == digest)
    ).scalar()


def copy_manifest(db: Database, conn: Connection, source_repo: str, target_id: int, digest: str) -> int:
    """Make a manifest of another repository (and what it references: an index's children,
    the blobs) available in the target repository; returns its id there."""
    found = _manifest_id(conn, target_id, digest)
    if found is not None:
        return found
    db.gc_shared(conn)
    source = conn.execute(
        select(manifests)
        .select_from(manifests.join(repositories, repositories.c.id == manifests.c.repository_id))
        .where(repositories.c.name == source_repo, manifests.c.digest == digest)
    ).first()
    if source is None:
        raise ResourceConflict(
            f"the image {digest} left {source_repo} while it was being tagged; try again",
            kind=IMAGES,
            group=GROUP,
            name=digest,
        )
    for (child,) in conn.execute(
        select(manifest_children.c.child_digest).where(manifest_children.c.manifest_id == source.id)
    ):
        copy_manifest(db, conn, source_repo, target_id, child)
    referenced = list(
        conn.execute(select(manifest_blobs.c.digest).where(manifest_blobs.c.manifest_id == source.id)).scalars()
    )
    # Only blobs this registry holds are linked; an imported image's others stay upstream and
    # are pulled through in the target repository too (the manifest keeps its upstream).
    digests = (
        list(conn.execute(select(blobs.c.digest).where(blobs.c.digest.in_(referenced))).scalars()) if referenced else []
    )
    if digests:
        claimed = conn.execute(
            select(blobs.c.digest).where(blobs.c.digest.in_(digests), blobs.c.deleting_since.is_not(None))
        ).first()
        if claimed is not None:
            raise ResourceConflict(
                f"a layer of {digest} is being garbage collected; try again",
                kind=IMAGES,
                group=GROUP,
                name=digest,
            )
        now = utcnow()
        conn.execute(
            db.insert_ignore(repository_blobs, "repository_id", "digest"),
            [{"repository_id": target_id, "digest": d, "created_at": now, "pending_since": None} for d in digests],
        )
    values = {c.name: getattr(source, c.name) for c in manifests.columns if c.name not in ("id", "repository_id")}
    conn.execute(
        db.insert_ignore(manifests, "repository_id", "digest"),
        {**values, "repository_id": target_id, "created_at": utcnow(), "last_pushed_at": utcnow()},
    )
    manifest_id = _manifest_id(conn, target_id, digest)
    assert manifest_id is not None
    if referenced:
        conn.execute(
            db.insert_ignore(manifest_blobs, "manifest_id", "digest"),
            [{"manifest_id": manifest_id, "digest": d} for d in referenced],
        )
    children = list(
        conn.execute(
            select(manifest_children.c.child_digest).where(manifest_children.c.manifest_id == source.id)
        ).scalars()
    )
    if children:
        conn.execute(
            db.insert_ignore(manifest_children, "manifest_id", "child_digest"),
            [{"manifest_id": manifest_id, "child_digest": d} for d in children],
        )
    return manifest_id


def point_tag(
    db: Database,
    conn: Connection,
    repo_id: int,
    tag: str,
    manifest_id: int,
    digest: str,
    generation: int,
    pushed_by: str | None = None,
    reference: str | None = None,
) -> str | None:
    """Point a registry tag at a manifest of its repository, adding a history item when it
    moves (`reference`: the upstream pull spec of an imported image). Returns ADDED or
    MODIFIED when the tag changed, else None."""
    current = conn.execute(_TAG_TARGET, {"repo_id": repo_id, "tag": tag}).scalar()
    if current == manifest_id:
        return None
    now = utcnow()
    conn.execute(
        db.upsert(tags, ("repository_id", "name"), ("manifest_id", "updated_at")),
        {"repository_id": repo_id, "name": tag, "manifest_id": manifest_id, "updated_at": now},
    )
    conn.execute(
        _INSERT_TAG_EVENT,
        {
            "repository_id": repo_id,
            "tag": tag,
            "digest": digest,
            "created_at": now,
            "pushed_by": pushed_by,
            "generation": generation,
            "reference": reference,
        },
    )
    return ADDED if current is None else MODIFIED


def spec_of(conn: Connection, repo_id: int) -> tuple[int, list[TagReference]]:
    row = conn.execute(_SPEC, {"repo_id": repo_id}).first()
    return (row.generation if row is not None else 1), _spec_tags(row.spec if row is not None else None)


def _spec_tags(spec: dict[str, Any] | None) -> list[TagReference]:
    return [TagReference.from_json(t) for t in (spec or {}).get("tags", [])]


def follow_tracking_tags(
    db: Database,
    conn: Connection,
    repo: str,
    repo_id: int,
    moved: str,
    manifest_id: int,
    digest: str,
    pushed_by: str | None = None,
    spec: tuple[int, list[TagReference]] | None = None,
) -> list[str]:
    """Spec tags of the stream that point at tag `moved` of the same stream (`oc tag --alias`)
    move with it. Returns the tags moved (transitively). `spec`: the stream's generation and
    spec tags when the caller has read them in this transaction."""
    namespace, stream = split_repository(repo) or ("", repo)
    generation, spec_tags = spec if spec is not None else spec_of(conn, repo_id)
    if not spec_tags:
        return []
    followers: dict[str, list[str]] = defaultdict(list)
    for ref in spec_tags:
        if ref.from_kind != "ImageStreamTag" or (ref.from_namespace or namespace) != namespace:
            continue
        other, sep, target = (ref.from_name or "").rpartition(":")
        if not sep:
            other, target = stream, ref.from_name or ""
        if other == stream:
            followers[target].append(ref.name)
    moved_tags: list[str] = []
    queue, seen = [moved], {moved}
    while queue:
        for follower in followers.get(queue.pop(), ()):
            if follower in seen:
                continue
            seen.add(follower)
            if point_tag(db, conn, repo_id, follower, manifest_id, digest, generation, pushed_by):
                moved_tags.append(follower)
            queue.append(follower)
    return moved_tags


# -- writing streams -----------------------------------------------------------------------------


def _check_version(stream_rv: int, expected: int | None, name: str) -> None:
    if expected is not None and expected != stream_rv:
        raise ResourceConflict(
            f'Operation cannot be fulfilled on imagestreams.{GROUP} "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
            kind=STREAMS,
            group=GROUP,
            name=name,
        )


def _new_spec_tags(old: Sequence[TagReference], new: Sequence[TagReference], generation: int) -> list[TagReference]:
    """Stamp changed or new tags with the generation; generation 0 asks for a re-import."""
    before = {t.name: t for t in old}
    stamped = []
    for tag in new:
        prior = before.get(tag.name)
        if prior is not None and prior.same_intent(tag) and tag.generation != 0:
            stamped.append(replace(tag, generation=prior.generation))
        else:
            stamped.append(replace(tag, generation=generation))
    return stamped


def _spec_json(spec_tags: Sequence[TagReference], lookup_local: bool) -> dict[str, Any]:
    return {"tags": [t.to_json() for t in spec_tags], "lookup_local": lookup_local}


def _apply_sources(
    db: Database,
    conn: Connection,
    repo: str,
    repo_id: int,
    sources: Sequence[Source],
    generation: int,
    pushed_by: str | None,
) -> list[Change | None]:
    recorded: list[Change | None] = []
    for source in sources:
        manifest_id = copy_manifest(db, conn, source.repository, repo_id, source.digest)
        moved = point_tag(db, conn, repo_id, source.tag, manifest_id, source.digest, generation, pushed_by)
        if moved:
            recorded.append(tag_changed(repo, source.tag, moved))
            for follower in follow_tracking_tags(
                db, conn, repo, repo_id, source.tag, manifest_id, source.digest, pushed_by
            ):
                recorded.append(tag_changed(repo, follower))
    return recorded


async def create_stream(
    reg: Registry,
    namespace: str,
    name: str,
    edit: StreamEdit,
    may_read: MayRead | None = None,
    actor: str | None = None,
    dry_run: bool = False,
) -> Stream:
    """Create the stream; with `dry_run`, every check runs and nothing is kept: the answer is
    the stream as it would have been created."""
    if not valid_stream_name(namespace, name):
        raise _invalid(
            namespace, name, [("metadata.name", "must be a repository name: lowercase letters, digits, separators")]
        )
    sources = await resolve_sources(reg, namespace, name, edit.spec_tags, may_read)
    repo = f"{namespace}/{name}"

    def run(conn: Connection) -> Stream:
        existing = conn.execute(
            select(repositories.c.id).where(repositories.c.name == repo, repositories.c.deleted_at.is_(None))
        ).first()
        if existing is not None:
            raise ResourceAlreadyExists(STREAMS, GROUP, name)
        repo_id = ensure_stream(reg.db, conn, repo).id
        spec_tags = _new_spec_tags((), edit.spec_tags, 1)
        conn.execute(
            update(repositories)
            .where(repositories.c.id == repo_id)
            .values(
                labels=dict(edit.labels) or None,
                annotations=dict(edit.annotations) or None,
                spec=_spec_json(spec_tags, edit.lookup_local),
            )
        )
        recorded = _apply_sources(reg.db, conn, repo, repo_id, sources, 1, actor)
        record_and_stamp(reg.db, conn, repo_id, [stream_added(repo), *recorded])
        made = _one(conn, namespace, name)
        # A dry run stores nothing, so the object has no resourceVersion yet (as the API server).
        return dataclasses.replace(made, resource_version=0) if dry_run else made

    return await _written(reg, repo, run, dry_run)


T = TypeVar("T")


async def _written(reg: Registry, repo: str, run: Callable[[Connection], T], dry_run: bool) -> T:
    """Run a write (rolled back when `dry_run`); after a real one, caches forget `repo`."""
    result = await reg.db.write(run, rehearse=dry_run)
    if not dry_run:
        await reg.cache.changed(repo)
    return result


async def update_stream(
    reg: Registry,
    namespace: str,
    name: str,
    edit: StreamEdit | Callable[[Stream], StreamEdit],
    expected_version: int | None,
    may_read: MayRead | None = None,
    actor: str | None = None,
    dry_run: bool = False,
) -> Stream:
    """Replace the stream's labels, annotations and spec (PUT), or apply `edit(current)` to
    it (a PATCH). With `expected_version` the update holds only if the stream is still at
    that version (409 otherwise); without it, a change made meanwhile is read and the edit
    applied again. Tags removed from the spec stay in status (OpenShift keeps pushed tags);
    tags whose source changed are resolved and moved."""
    for _ in range(5):
        current = await get_stream(reg, namespace, name)
        wanted = edit(current) if callable(edit) else edit
        try:
            return await _update_once(reg, current, wanted, expected_version, may_read, actor, dry_run)
        except ResourceConflict:
            if expected_version is not None:
                raise
    raise ResourceConflict(
        f'imagestreams.{GROUP} "{name}" kept changing while it was updated; try again',
        kind=STREAMS,
        group=GROUP,
        name=name,
    )


async def _update_once(
    reg: Registry,
    current: Stream,
    edit: StreamEdit,
    expected_version: int | None,
    may_read: MayRead | None,
    actor: str | None,
    dry_run: bool,
) -> Stream:
    namespace, name, repo = current.namespace, current.name, current.repository
    _check_version(current.resource_version, expected_version, name)
    cycle = find_cycle(edit.spec_tags, namespace, name)
    if cycle is not None:
        raise _invalid(namespace, name, [(f"spec.tags[{cycle[0]}].from", cycle[1])])
    before = {t.name: t for t in current.spec_tags}
    changed_refs = [
        t for t in edit.spec_tags if t.name not in before or not before[t.name].same_intent(t) or t.generation == 0
    ]
    sources = await resolve_sources(reg, namespace, name, changed_refs, may_read)

    def run(conn: Connection) -> Stream:
        row = conn.execute(
            select(
                repositories.c.id,
                repositories.c.resource_version,
                repositories.c.generation,
                repositories.c.spec,
                repositories.c.labels,
                repositories.c.annotations,
                repositories.c.tag_conditions,
            ).where(repositories.c.name == repo, repositories.c.deleted_at.is_(None))
        ).first()
        if row is None:
            raise ResourceNotFound(STREAMS, GROUP, name)
        # The object may have changed since it was read: the caller's version must still hold.
        _check_version(row.resource_version, current.resource_version, name)
        old_tags = [TagReference.from_json(t) for t in (row.spec or {}).get("tags", [])]
        old_local = bool((row.spec or {}).get("lookup_local", False))
        spec_differs = (
            old_local != edit.lookup_local
            or len(old_tags) != len(edit.spec_tags)
            or any(not a.same_intent(b) or b.generation == 0 for a, b in zip(old_tags, edit.spec_tags, strict=False))
        )
        generation = row.generation + 1 if spec_differs else row.generation
        spec_tags = _new_spec_tags(old_tags, edit.spec_tags, generation)
        meta_differs = (row.labels or {}) != dict(edit.labels) or (row.annotations or {}) != dict(edit.annotations)
        if not spec_differs and not meta_differs:
            return _one(conn, namespace, name)
        kept_conditions = {t: c for t, c in (row.tag_conditions or {}).items() if t in {x.name for x in spec_tags}}
        conn.execute(
            update(repositories)
            .where(repositories.c.id == row.id)
            .values(
                generation=generation,
                labels=dict(edit.labels) or None,
                annotations=dict(edit.annotations) or None,
                spec=_spec_json(spec_tags, edit.lookup_local),
                tag_conditions=kept_conditions or None,
            )
        )
        recorded = _apply_sources(reg.db, conn, repo, row.id, sources, generation, actor)
        record_and_stamp(reg.db, conn, row.id, [stream_changed(repo), *recorded])
        made = _one(conn, namespace, name)
        # A dry run stores nothing: the object keeps the version it has (kubectl diff shows no change of it).
        return dataclasses.replace(made, resource_version=row.resource_version) if dry_run else made

    return await _written(reg, repo, run, dry_run)


async def delete_stream(
    reg: Registry,
    namespace: str,
    name: str,
    expected_version: int | None = None,
    expected_uid: str | None = None,
    dry_run: bool = False,
) -> Stream:
    """Delete the stream: its tags, history and spec go; its manifests and blobs stay until the
    pruner finds nothing references them (pulls by digest work until then). The preconditions
    (a resourceVersion, a uid: this very object, not one recreated under its name) hold or
    it is a 409 Conflict."""
    repo = f"{namespace}/{name}"
    current = await get_stream(reg, namespace, name)
    _check_version(current.resource_version, expected_version, name)
    if expected_uid is not None and expected_uid != current.uid:
        raise ResourceConflict(
            f'Operation cannot be fulfilled on imagestreams.{GROUP} "{name}": precondition failed: '
            f"UID in precondition: {expected_uid}, UID in object meta: {current.uid}",
            kind=STREAMS,
            group=GROUP,
            name=name,
        )

    def run(conn: Connection) -> Stream:
        row = conn.execute(
            select(repositories.c.id, repositories.c.resource_version).where(
                repositories.c.name == repo, repositories.c.deleted_at.is_(None)
            )
        ).first()
        if row is None:
            raise ResourceNotFound(STREAMS, GROUP, name)
        _check_version(row.resource_version, current.resource_version, name)  # not changed since
        tag_names = list(conn.execute(select(tags.c.name).where(tags.c.repository_id == row.id)).scalars())
        conn.execute(delete(tags).where(tags.c.repository_id == row.id))
        conn.execute(delete(tag_events).where(tag_events.c.repository_id == row.id))
        conn.execute(
            update(repositories)
            .where(repositories.c.id == row.id)
            .values(deleted_at=utcnow(), spec=None, tag_conditions=None, imported_at=None)
        )
        entries: list[Change | None] = [
            tag_changed(repo, t, DELETED, {"stream": current.uid, "tag": t}) for t in tag_names
        ]
        entries.append(Change(STREAMS, namespace, name, DELETED, snapshot(current)))
        record_and_stamp(reg.db, conn, row.id, entries)
        return current

    return await _written(reg, repo, run, dry_run)


def snapshot(stream: Stream) -> dict[str, Any]:
    """What a DELETED change keeps of a stream: its metadata (watchers get it back)."""
    return {
        "namespace": stream.namespace,
        "name": stream.name,
        "uid": stream.uid,
        "resourceVersion": stream.resource_version,
        "generation": stream.generation,
        "created": stream.created.isoformat(),
        "labels": dict(stream.labels),
        "annotations": dict(stream.annotations),
    }


# -- image stream tags ---------------------------------------------------------------------------


def _conflict(name: str) -> ResourceConflict:
    return ResourceConflict(
        f'Operation cannot be fulfilled on imagestreamtags.{GROUP} "{name}": the object has been modified; '
        "please apply your changes to the latest version and try again",
        kind=STREAM_TAGS,
        group=GROUP,
        name=name,
    )


async def set_tag(
    reg: Registry,
    namespace: str,
    stream: str,
    ref: TagReference,
    may_read: MayRead | None = None,
    actor: str | None = None,
    expected_version: int | None = None,
    create_only: bool = False,
    dry_run: bool = False,
) -> Stream:
    """Set one spec tag (an ImageStreamTag create or update, `okura tag`), creating the stream
    if needed. A tag pointing at an image or another tag moves at once (history item)."""
    if not valid_stream_name(namespace, stream):
        raise ResourceNotFound(STREAM_TAGS, GROUP, f"{stream}:{ref.name}")
    repo = f"{namespace}/{stream}"
    sources = await resolve_sources(reg, namespace, stream, [ref], may_read)

    def run(conn: Connection) -> Stream:
        row = conn.execute(
            select(repositories.c.id, repositories.c.resource_version, repositories.c.deleted_at).where(
                repositories.c.name == repo
            )
        ).first()
        exists = row is not None and row.deleted_at is None
        if expected_version is not None and (not exists or row.resource_version != expected_version):
            raise _conflict(f"{stream}:{ref.name}")
        repo_id, created, generation, spec_tags = ensure_stream(reg.db, conn, repo)
        present = any(t.name == ref.name for t in spec_tags) or (
            conn.execute(select(tags.c.name).where(tags.c.repository_id == repo_id, tags.c.name == ref.name)).first()
            is not None
        )
        if create_only and present:
            raise ResourceAlreadyExists(STREAM_TAGS, GROUP, f"{stream}:{ref.name}")
        prior = next((t for t in spec_tags if t.name == ref.name), None)
        kept = [t for t in spec_tags if t.name != ref.name]
        cycle = find_cycle([ref, *kept], namespace, stream)
        if cycle is not None and cycle[0] == 0:
            raise _invalid(namespace, stream, [("tag.from", cycle[1])])
        entries: list[Change | None] = [stream_added(repo)] if created else []
        if prior is None or not prior.same_intent(ref) or ref.generation == 0:
            generation += 1
            spec = conn.execute(select(repositories.c.spec).where(repositories.c.id == repo_id)).scalar() or {}
            conn.execute(
                update(repositories)
                .where(repositories.c.id == repo_id)
                .values(
                    generation=generation,
                    spec=_spec_json([*kept, replace(ref, generation=generation)], bool(spec.get("lookup_local"))),
                )
            )
            entries.append(stream_changed(repo))
            entries.append(tag_changed(repo, ref.name, ADDED if not present else MODIFIED))
        entries += _apply_sources(reg.db, conn, repo, repo_id, sources, generation, actor)
        record_and_stamp(reg.db, conn, repo_id, entries)
        made = _one(conn, namespace, stream)
        if dry_run:  # nothing stored: the version the stream has (none if the dry run made it)
            return dataclasses.replace(made, resource_version=row.resource_version if exists else 0)
        return made

    return await _written(reg, repo, run, dry_run)


async def delete_tag(
    reg: Registry,
    namespace: str,
    stream: str,
    tag: str,
    expected_version: int | None = None,
    expected_uid: str | None = None,
    dry_run: bool = False,
) -> None:
    """Delete a tag: the spec tag, the registry tag and its history (the images stay for the
    pruner). NotFound when the stream has neither; 409 when the stream is no longer at
    `expected_version` or is not the object `expected_uid` names."""
    repo = f"{namespace}/{stream}"
    name = f"{stream}:{tag}"

    def run(conn: Connection) -> None:
        row = conn.execute(
            select(
                repositories.c.id,
                repositories.c.spec,
                repositories.c.resource_version,
                repositories.c.uid,
                repositories.c.tag_conditions,
            ).where(repositories.c.name == repo, repositories.c.deleted_at.is_(None))
        ).first()
        if row is None:
            raise ResourceNotFound(STREAM_TAGS, GROUP, name)
        if (expected_version is not None and row.resource_version != expected_version) or (
            expected_uid is not None and row.uid != expected_uid
        ):
            raise _conflict(name)
        spec = row.spec or {}
        spec_tags = [TagReference.from_json(t) for t in spec.get("tags", [])]
        kept = [t for t in spec_tags if t.name != tag]
        removed_tag = conn.execute(delete(tags).where(tags.c.repository_id == row.id, tags.c.name == tag)).rowcount
        conn.execute(delete(tag_events).where(tag_events.c.repository_id == row.id, tag_events.c.tag == tag))
        conditions = dict(row.tag_conditions or {})
        had_condition = conditions.pop(tag, None) is not None
        if not removed_tag and len(kept) == len(spec_tags) and not had_condition:
            raise ResourceNotFound(STREAM_TAGS, GROUP, name)
        if had_condition:
            conn.execute(
                update(repositories).where(repositories.c.id == row.id).values(tag_conditions=conditions or None)
            )
        if len(kept) != len(spec_tags):
            conn.execute(
                update(repositories)
                .where(repositories.c.id == row.id)
                .values(spec=_spec_json(kept, bool(spec.get("lookup_local"))), generation=repositories.c.generation + 1)
            )
        record_and_stamp(
            reg.db,
            conn,
            row.id,
            [stream_changed(repo), tag_changed(repo, tag, DELETED, {"namespace": namespace, "name": name})],
        )

    await _written(reg, repo, run, dry_run)
