"""imageregistry.operator.openshift.io/v1: the registry's own cluster-scoped resources, as
the OpenShift image registry operator defines them (the ImagePruner)."""

from __future__ import annotations

from registry.kube.meta import META, list_schema
from registry.kube.resources import Column, ResourceDef
from registry.kube.schema import Schema, array, boolean, free_form, integer, obj, ref, string, string_map

GROUP = "imageregistry.operator.openshift.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = "com.github.openshift.api.imageregistry.v1"

# OpenShift's OperatorCondition.
OPERATOR_CONDITION: Schema = obj(
    {
        "type": string("Available, Scheduled or Failed."),
        "status": string("True, False or Unknown."),
        "lastTransitionTime": string("When the status last changed.", fmt="date-time"),
        "reason": string(),
        "message": string(),
    },
    "A condition of the pruner.",
)
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

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.ImagePruner": IMAGE_PRUNER,
    f"{PREFIX}.ImagePrunerList": list_schema(f"{PREFIX}.ImagePruner", "ImagePruner"),
}

IMAGE_PRUNERS = ResourceDef(
    GROUP,
    VERSION,
    "ImagePruner",
    "imagepruners",
    namespaced=False,
    verbs=("get", "list", "watch", "update", "patch"),
    schema=f"{PREFIX}.ImagePruner",
    columns=(Column("Name", format="name"), Column("Age", description="When it was created")),
)

RESOURCES = (IMAGE_PRUNERS,)
