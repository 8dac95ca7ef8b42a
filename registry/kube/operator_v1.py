"""imageregistry.operator.openshift.io/v1: the registry's own cluster-scoped resources, as
the OpenShift image registry operator defines them (the ImagePruner and the Config)."""

from __future__ import annotations

from registry.kube.meta import META, list_schema
from registry.kube.resources import Column, ResourceDef
from registry.kube.schema import Schema, array, boolean, free_form, integer, obj, ref, string, string_map

GROUP = "imageregistry.operator.openshift.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = "com.github.openshift.api.imageregistry.v1"


def operator_condition(types: str, owner: str) -> Schema:
    """OpenShift's OperatorCondition; `types` names the condition types there are."""
    return obj(
        {
            "type": string(types),
            "status": string("True, False or Unknown."),
            "lastTransitionTime": string("When the status last changed.", fmt="date-time"),
            "reason": string(),
            "message": string(),
        },
        f"A condition of {owner}.",
    )


OPERATOR_CONDITION: Schema = operator_condition("Available, Scheduled or Failed.", "the pruner")
# Set by the server and ignored on writes, so anything goes there (OpenShift's example has a
# typo in it); the fields are published for `kubectl apply` and `kubectl explain`.
IMAGE_PRUNER_STATUS: Schema = {
    **obj(
        {
            "observedGeneration": integer("The last generation of the spec the pruner acted on."),
            "conditions": array(OPERATOR_CONDITION, "Available, Scheduled and Failed."),
            "lastScheduleTime": string("When a run was last scheduled.", fmt="date-time"),
            "lastSuccessfulTime": string("When a run last succeeded.", fmt="date-time"),
            "lastMissedScheduleTime": string("When a scheduled run was last missed.", fmt="date-time"),
            "nextScheduleTime": string("When the next run is scheduled.", fmt="date-time"),
            "lastRun": free_form("The outcome of the most recent run."),
            "runs": array(free_form(), "The run history, newest first."),
        },
        "Conditions, the schedule and the run history; set by the server.",
    ),
    "x-kubernetes-preserve-unknown-fields": True,
}

IMAGE_PRUNER: Schema = obj(
    {
        "kind": string("ImagePruner."),
        "apiVersion": string(API_VERSION),
        "metadata": ref(f"{META}.ObjectMeta", "Standard object metadata; the only ImagePruner is named cluster."),
        "spec": obj(
            {
                "schedule": string("Cron schedule of pruning runs (UTC); empty: daily at midnight."),
                "suspend": boolean("No scheduled runs while true."),
                "keepTagRevisions": integer("Revisions kept per tag (default 3)."),
                "keepYoungerThan": integer("Deprecated: nanoseconds; keepYoungerThanDuration wins."),
                "keepYoungerThanDuration": string("Images younger than this are kept (Go duration; days too)."),
                "resources": free_form("Kept as given; no effect."),
                "affinity": free_form("Kept as given; no effect."),
                "nodeSelector": string_map("Kept as given; no effect."),
                "tolerations": array(free_form(), "Kept as given; no effect."),
                "successfulJobsHistoryLimit": integer("Successful runs kept in the history (default 3)."),
                "failedJobsHistoryLimit": integer("Failed runs kept in the history (default 3)."),
                "ignoreInvalidImageReferences": boolean("Prune even when some references are invalid."),
                "logLevel": string("Normal, Debug, Trace or TraceAll.", enum=("Normal", "Debug", "Trace", "TraceAll")),
                "pruneRegistry": boolean("false: prune metadata only, leave storage untouched."),
            },
            "When and how images are pruned.",
        ),
        "status": IMAGE_PRUNER_STATUS,
    },
    "The image pruner: one cluster-scoped object named cluster.",
)

# -- the Config (configs.imageregistry.operator.openshift.io/cluster) -----------------------------

_LOG_LEVELS = ("Normal", "Debug", "Trace", "TraceAll")
_CONFIG_FILE = "Set in the config file (storage.*): the only value taken is the one in effect."
_OTHER_STORAGE = "Not supported: storage is set in the config file."

REQUEST_LIMITS: Schema = obj(
    {
        "maxRunning": integer("At most this many requests at once; 0: no limit."),
        "maxInQueue": integer("At most this many more wait for their turn; 0: none wait."),
        "maxWaitInQueue": string("How long one may wait (a Go duration such as 30s or 2m); 0s: no limit."),
    },
    "Limits of concurrent requests under /v2/ (429 Too Many Requests beyond them).",
)

STORAGE: Schema = obj(
    {
        "managementState": string("Unmanaged: Okura never creates or deletes the storage."),
        "s3": obj(
            {
                "bucket": string("The bucket."),
                "region": string("The region."),
                "regionEndpoint": string("The endpoint of an S3-compatible service."),
                "rootDirectory": string("The prefix of every key the registry writes."),
                "virtualHostedStyle": boolean("Bucket in the host name (false: in the path)."),
                "encrypt": boolean(_OTHER_STORAGE),
                "keyID": string(_OTHER_STORAGE),
                "cloudFront": free_form(_OTHER_STORAGE),
                "trustedCA": free_form(_OTHER_STORAGE),
                "chunkSizeMiB": integer(_OTHER_STORAGE),
            },
            f"S3 storage. {_CONFIG_FILE}",
        ),
        "filesystem": obj({"path": string("The directory blobs are stored in.")}, f"A local directory. {_CONFIG_FILE}"),
        **{kind: free_form(_OTHER_STORAGE) for kind in ("emptyDir", "pvc", "gcs", "swift", "azure", "ibmcos", "oss")},
    },
    f"Where blobs are stored. {_CONFIG_FILE}",
)

CONFIG_SPEC: Schema = obj(
    {
        "managementState": string(
            "Managed: in effect; Unmanaged: stored but not applied; Removed: the registry serves no images.",
            enum=("Managed", "Unmanaged", "Removed"),
        ),
        "logLevel": string("Normal keeps the config file's log level; the others log debug.", enum=_LOG_LEVELS),
        "operatorLogLevel": string("Kept as given; no effect.", enum=_LOG_LEVELS),
        "readOnly": boolean("Refuse pushes, tag changes and deletes (pulls go on)."),
        "disableRedirect": boolean("Serve blobs through the registry, never redirect to the storage."),
        "requests": obj(
            {"read": REQUEST_LIMITS, "write": REQUEST_LIMITS},
            "Limits of concurrent read (GET, HEAD) and write requests.",
        ),
        "defaultRoute": boolean("Expose the registry at http.public_url (the public host of image streams)."),
        "routes": array(
            obj(
                {
                    "name": string("The route's name (unique)."),
                    "hostname": string("HOST[:PORT]: the first route's is the public host of image streams."),
                    "secretName": string("Kept as given; no effect."),
                },
                "A public route to the registry.",
                required=("name",),
            ),
            "Public routes to the registry.",
        ),
        "replicas": integer("How many server processes should be ready (status and conditions compare)."),
        "rolloutStrategy": string("Kept as given; no effect.", enum=("RollingUpdate", "Recreate")),
        "storage": STORAGE,
        "resources": free_form("Kept as given; no effect."),
        "nodeSelector": string_map("Kept as given; no effect."),
        "tolerations": array(free_form(), "Kept as given; no effect."),
        "affinity": free_form("Kept as given; no effect."),
        "topologySpreadConstraints": array(free_form(), "Kept as given; no effect."),
        "proxy": obj(
            {"http": string(), "https": string(), "noProxy": string()},
            "Kept as given; no effect (imports use imports.* of the config file).",
        ),
        "unsupportedConfigOverrides": free_form("Kept as given; no effect."),
        "observedConfig": free_form("Kept as given; no effect."),
        "httpSecret": string("Kept as given; no effect."),
        "logging": integer("Deprecated; kept as given, no effect."),
    },
    "How the registry runs: management state, read-only mode, log level, request limits, routes.",
)

# Set by the server and ignored on writes (OpenShift's status has more fields).
CONFIG_STATUS: Schema = {
    **obj(
        {
            "observedGeneration": integer("The generation every live replica has applied."),
            "readyReplicas": integer("How many server processes are ready."),
            "storageManaged": boolean("Always false: the storage is set up outside the registry."),
            "storage": STORAGE,
            "conditions": array(
                operator_condition("Available, Progressing, Degraded, Removed or StorageExists.", "the registry"),
                "Available, Progressing, Degraded, Removed and StorageExists.",
            ),
        },
        "Replicas, storage and conditions; set by the server.",
    ),
    "x-kubernetes-preserve-unknown-fields": True,
}

CONFIG: Schema = obj(
    {
        "kind": string("Config."),
        "apiVersion": string(API_VERSION),
        "metadata": ref(f"{META}.ObjectMeta", "Standard object metadata; the only Config is named cluster."),
        "spec": CONFIG_SPEC,
        "status": CONFIG_STATUS,
    },
    "The registry's configuration: one cluster-scoped object named cluster.",
)

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.ImagePruner": IMAGE_PRUNER,
    f"{PREFIX}.ImagePrunerList": list_schema(f"{PREFIX}.ImagePruner", "ImagePruner"),
    f"{PREFIX}.Config": CONFIG,
    f"{PREFIX}.ConfigList": list_schema(f"{PREFIX}.Config", "Config"),
}


def _singleton(kind: str, plural: str) -> ResourceDef:
    """A cluster-scoped resource of one object, named cluster: read, replaced and patched."""
    return ResourceDef(
        GROUP,
        VERSION,
        kind,
        plural,
        namespaced=False,
        verbs=("get", "list", "watch", "update", "patch"),
        schema=f"{PREFIX}.{kind}",
        columns=(Column("Name", format="name"), Column("Age", description="When it was created")),
    )


IMAGE_PRUNERS = _singleton("ImagePruner", "imagepruners")
CONFIGS = _singleton("Config", "configs")

RESOURCES = (IMAGE_PRUNERS, CONFIGS)
