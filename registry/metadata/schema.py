"""Tables of the metadata database. Migrations in registry/metadata/migrations must
produce exactly this schema (a test compares them)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

DIGEST = String(160)
TS = DateTime(timezone=True)

# A repository is also an ImageStream of the API: its object metadata and spec live here.
repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", TS, nullable=False),
    Column("uid", String(36), nullable=False),
    Column("resource_version", BigInteger, nullable=False, server_default="1"),  # its last change's id
    Column("generation", BigInteger, nullable=False, server_default="1"),  # bumped by spec changes
    Column("labels", JSON, nullable=True),
    Column("annotations", JSON, nullable=True),
    Column("spec", JSON, nullable=True),  # spec.tags (TagReferences) and spec.lookupPolicy
    # The stream was deleted: its tags and history are gone, its images are left to the
    # pruner; a push or a create brings the stream back as a new object.
    Column("deleted_at", TS, nullable=True),
    # Imports (registry/model/imports.py): each tag's ImportSuccess condition after a failed
    # import ({tag: condition}), and when the stream's tags were last imported (the
    # scheduler's clock).
    Column("tag_conditions", JSON, nullable=True),
    Column("imported_at", TS, nullable=True),
)

# Blobs known to be in storage, global and content addressed.
blobs = Table(
    "blobs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", TS, nullable=False),
    # Online GC (registry/pruning/gc.py): an upload or mount awaiting its manifest sets
    # pending_since (the manifest clears it), which protects the blob for the grace
    # period. The collector claims a blob (deleting_since) before deleting it from
    # storage and drops the row after; writers that meet a claimed blob wait for it to
    # go and then store it afresh.
    Column("pending_since", TS, nullable=True),
    Column("deleting_since", TS, nullable=True),
)

# Which repositories may serve a blob (distribution's _layers links).
repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", DIGEST, ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True),
    Column("created_at", TS, nullable=False),
    Column("pending_since", TS, nullable=True),  # as blobs.pending_since, per repository
    Index("ix_repository_blobs_digest", "digest"),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("config_digest", DIGEST, nullable=True),
    Column("subject_digest", DIGEST, nullable=True),
    Column("artifact_type", String(255), nullable=True),
    Column("annotations", JSON, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("pushed_by", String(255), nullable=True),
    # Every push of this manifest sets it: a re-pushed manifest counts as young.
    Column("last_pushed_at", TS, nullable=True),
    Column("resource_version", BigInteger, nullable=False, server_default="1"),  # the change adding it
    # An imported manifest: the upstream repository (host/path) its blobs are fetched from on
    # first pull (pull-through), and whether that may be plain HTTP or unverified TLS.
    Column("upstream", String(512), nullable=True),
    Column("upstream_insecure", Boolean, nullable=True),
    UniqueConstraint("repository_id", "digest"),
    Index("ix_manifests_subject", "repository_id", "subject_digest"),
    Index("ix_manifests_digest", "digest"),
)

# Blobs a manifest references (config and layers).
manifest_blobs = Table(
    "manifest_blobs",
    metadata,
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Index("ix_manifest_blobs_digest", "digest"),
)

# Child manifests an index references.
manifest_children = Table(
    "manifest_children",
    metadata,
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True),
    Column("child_digest", DIGEST, primary_key=True),
    Index("ix_manifest_children_child", "child_digest"),
)

tags = Table(
    "tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("manifest_id", Integer, ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_tags_manifest", "manifest_id"),
)

# Every time a tag points at a new manifest: the image stream's tag history.
tag_events = Table(
    "tag_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("tag", String(128), nullable=False),
    Column("digest", DIGEST, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("pushed_by", String(255), nullable=True),
    Column("generation", BigInteger, nullable=False, server_default="1"),  # the stream's at the time
    Column("reference", String(700), nullable=True),  # imported: the upstream pull spec by digest
    Index("ix_tag_events_repo_tag", "repository_id", "tag", "created_at"),
    Index("ix_tag_events_digest", "digest"),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("hash_state", LargeBinary, nullable=True),
    Column("driver_state", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_uploads_updated", "updated_at"),
)

# Leader leases for background jobs (one runner across workers and replicas).
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", TS, nullable=False),
)

# Each running server process (one row per process): what it listens on and when it last
# said it was alive. The CLI prints image references with a live server's address.
instances = Table(
    "instances",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("address", String(300), nullable=False),  # HOST:PORT as clients reach it
    Column("host", String(253), nullable=False),  # the machine's host name
    Column("version", String(64), nullable=False),
    Column("started_at", TS, nullable=False),
    Column("heartbeat_at", TS, nullable=False),
    Column("scheme", String(8), nullable=False, server_default="http"),  # http or https
    Column("restarts", Integer, nullable=False, server_default="0"),  # earlier starts of this name
    Column("ready", Boolean, nullable=False, server_default=false()),  # database and storage answer, not draining
    Column("phase", String(16), nullable=False, server_default="Running"),  # Running | Terminating | Stopped
    Column("not_ready_reason", String(500), nullable=True),
    Column("storage_error", String(500), nullable=True),  # its last storage check, None when it passed
    Column("config_generation", Integer, nullable=False, server_default="0"),  # the Config generation applied
    Column("uid", String(36), nullable=True),  # new on every start, as a pod's
    Column("stopped_at", TS, nullable=True),  # set on a clean exit; the row is kept for its restart count
)

# The registry's Config resource (configs.imageregistry.operator.openshift.io/cluster): the spec
# as written, the spec in effect (`applied`: Unmanaged stops copying spec into it) and the
# conditions whose transition times must persist. Created from the config file on first use.
registry_configs = Table(
    "registry_configs",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("applied", JSON, nullable=False),
    Column("applied_generation", Integer, nullable=False),
    Column("conditions", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("uid", String(36), nullable=False),
    Column("resource_version", BigInteger, nullable=False, server_default="1"),
    Column("labels", JSON, nullable=True),
    Column("annotations", JSON, nullable=True),
)

# The change log: every change of an API object, in commit order. Its ids are the
# resourceVersions; watches stream from it on every replica. Trimmed by age.
changes = Table(
    "changes",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("resource", String(64), nullable=False),  # imagestreams, imagestreamtags, images, ...
    Column("namespace", String(253), nullable=True),
    Column("name", String(512), nullable=False),
    Column("type", String(16), nullable=False),  # ADDED, MODIFIED, DELETED
    Column("object", JSON, nullable=True),  # the object's last state, for DELETED
    Index("ix_changes_at", "at"),
)

# One row: the highest change id trimmed from the log (watches from below it get 410 Gone).
change_log = Table(
    "change_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("trimmed_through", BigInteger, nullable=False),
)

# Pull secrets (Kubernetes Secrets of the docker config types): `data` is the sealed JSON of
# the Secret's data (registry/imports/sealing.py), never stored in the clear.
secrets = Table(
    "secrets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("namespace", String(253), nullable=False),
    Column("name", String(253), nullable=False),
    Column("uid", String(36), nullable=False),
    Column("type", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("labels", JSON, nullable=True),
    Column("annotations", JSON, nullable=True),
    Column("created_at", TS, nullable=False),
    Column("resource_version", BigInteger, nullable=False),
    UniqueConstraint("namespace", "name"),
)

# -- notifications (registry/model/events.py, registry/notifications) ---------------------------
# The event log: one row per registry event, appended in the transaction of its change, ids in
# commit order (never reused: SQLite AUTOINCREMENT, a PostgreSQL sequence under the append lock).
events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("at", TS, nullable=False),
    Column("action", String(16), nullable=False),  # push, pull, mount, delete
    Column("namespace", String(253), nullable=True),
    Column("repository", String(255), nullable=False),
    Column("media_type", String(255), nullable=True),
    Column("digest", DIGEST, nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("tag", String(128), nullable=True),
    Column("actor", String(255), nullable=True),
    Column("detail", JSON, nullable=True),  # request, source, fromRepository, references, upstream
    Index("ix_events_at", "at"),
    Index("ix_events_namespace", "namespace", "id"),  # okura events list -n NS
    sqlite_autoincrement=True,
)
# Each endpoint's delivery state: the last event it has (or was skipped past), and its health.
notification_cursors = Table(
    "notification_cursors",
    metadata,
    Column("endpoint", String(253), primary_key=True),
    Column("cursor", BigInteger, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("last_success_at", TS, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_error_at", TS, nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),  # in a row
    Column("delivered", BigInteger, nullable=False, server_default="0"),
    Column("dropped", BigInteger, nullable=False, server_default="0"),  # past max_backlog
)
# Webhook endpoints added through the API (NotificationEndpoint objects); the config file's are
# not stored here.
notification_endpoints = Table(
    "notification_endpoints",
    metadata,
    Column("name", String(253), primary_key=True),
    Column("uid", String(36), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("labels", JSON, nullable=True),
    Column("annotations", JSON, nullable=True),
    Column("generation", Integer, nullable=False, server_default="1"),
    Column("created_at", TS, nullable=False),
    Column("resource_version", BigInteger, nullable=False, server_default="1"),
)
# -- image pruning (registry/pruning) ----------------------------------------------------------

# The ImagePruner custom resource, a singleton named "cluster" (OpenShift's
# imagepruners.imageregistry.operator.openshift.io): spec and status as JSON documents.
image_pruners = Table(
    "image_pruners",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("status", JSON, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("uid", String(36), nullable=True),
    Column("resource_version", BigInteger, nullable=False, server_default="1"),
    Column("labels", JSON, nullable=True),
    Column("annotations", JSON, nullable=True),
)

# One row per pruner run (scheduled or on demand), trimmed to the history limits.
prune_runs = Table(
    "prune_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trigger", String(16), nullable=False),  # scheduled | manual
    Column("dry_run", Boolean, nullable=False),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS, nullable=True),
    Column("outcome", String(16), nullable=False),  # running | succeeded | failed
    Column("message", Text, nullable=True),
    Column("counts", JSON, nullable=True),
    Index("ix_prune_runs_started", "started_at"),
)

# -- identities and access (auth/) -----------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("password_hash", String(255), nullable=True),
    Column("created_at", TS, nullable=False),
)

service_accounts = Table(
    "service_accounts",
    metadata,
    Column("namespace", String(255), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("created_at", TS, nullable=False),
)

# Long-lived API tokens; only a SHA-256 of the secret is kept.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("subject", String(255), nullable=False),  # user name or system:serviceaccount:<ns>:<name>
    Column("description", String(255), nullable=True),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS, nullable=True),
    Column("revoked_at", TS, nullable=True),
    Index("ix_tokens_subject", "subject"),
)

role_bindings = Table(
    "role_bindings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("role", String(64), nullable=False),
    Column("subject", String(255), nullable=False),  # user, system:serviceaccount:…, or group
    Column("namespace", String(255), nullable=True),  # NULL: cluster-wide
    Column("created_at", TS, nullable=False),
    UniqueConstraint("role", "subject", "namespace"),
)

# Password attempts per client address and per account (auth/ratelimit.py), shared by every
# worker and replica: attempts in the current window (failed or in flight) and any lockout.
login_failures = Table(
    "login_failures",
    metadata,
    Column("key", String(320), primary_key=True),  # client:<address> or account:<name>
    Column("attempts", Integer, nullable=False),
    Column("window_start", TS, nullable=False),
    Column("locked_until", TS, nullable=True),
)

# Keys that sign bearer JWTs. Retired keys stay to verify tokens they signed until those expire.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("private_pem", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("retired_at", TS, nullable=True),
)
