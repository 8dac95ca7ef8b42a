"""imageregistry.operator.openshift.io/v1: the registry's own cluster-scoped resources, as
the OpenShift image registry operator defines them (the ImagePruner)."""

from __future__ import annotations

from registry.kube.meta import META
from registry.kube.resources import Column, ResourceDef
from registry.kube.schema import Schema, array, boolean, free_form, integer, obj, ref, string, string_map

GROUP = "imageregistry.operator.openshift.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = "com.github.openshift.api.imageregistry.v1"

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
        "status": free_form("Conditions, the schedule and the run history; set by the server."),
    },
    "The image pruner: one cluster-scoped object named cluster.",
)

COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.ImagePruner": IMAGE_PRUNER,
    f"{PREFIX}.ImagePrunerList": obj(
        {
            "kind": string(),
            "apiVersion": string(),
            "metadata": ref(f"{META}.ListMeta"),
            "items": array(ref(f"{PREFIX}.ImagePruner")),
        },
        "A list of ImagePruner objects.",
    ),
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
