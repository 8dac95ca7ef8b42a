"""image.openshift.io/v1 as OpenShift defines it (image streams, their tags and images):
the schemas the OpenAPI documents publish and strict validation checks against."""

from __future__ import annotations

from registry.kube.meta import META
from registry.kube.patches import keyed_list
from registry.kube.resources import READ_VERBS, WRITE_VERBS, Column, ResourceDef
from registry.kube.schema import Schema, array, boolean, free_form, integer, obj, ref, string, string_map

GROUP = "image.openshift.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PREFIX = "com.github.openshift.api.image.v1"

OBJECT_META = ref(f"{META}.ObjectMeta", "Standard object metadata.")
LIST_META = ref(f"{META}.ListMeta", "Standard list metadata.")
KIND = string("The kind of the object.")
API = string("The API version of the object.")

OBJECT_REFERENCE: Schema = obj(
    {
        "kind": string(
            "ImageStreamTag, ImageStreamImage or DockerImage.",
            enum=("ImageStreamTag", "ImageStreamImage", "DockerImage"),
        ),
        "namespace": string("The namespace of the stream; empty: this stream's."),
        "name": string("`stream:tag` or `tag` (ImageStreamTag), `stream@digest` (ImageStreamImage), a pull spec."),
        "apiVersion": string(),
        "uid": string(),
        "resourceVersion": string(),
        "fieldPath": string(),
    },
    "What a tag points at.",
)

TAG_REFERENCE: Schema = obj(
    {
        "name": string("The tag."),
        "annotations": string_map("Copied onto images seen through this tag."),
        "from": ref(f"{PREFIX}.ObjectReference", "Where the tag points: another tag, an image, or an external image."),
        "reference": boolean("The tag only points at its source and is never imported."),
        "generation": integer("The stream generation that last changed this tag; 0 asks for a re-import."),
        "importPolicy": obj(
            {
                "insecure": boolean("Allow plain HTTP and unverified TLS for the import."),
                "scheduled": boolean("Re-import periodically."),
                "importMode": string("Legacy or PreserveOriginal.", enum=("Legacy", "PreserveOriginal")),
            },
            "How an external image is imported.",
        ),
        "referencePolicy": obj(
            {"type": string("Source (the default) or Local.", enum=("Source", "Local"))},
            "Whether consumers pull from the source or through this registry.",
        ),
    },
    "A tag of the stream's spec.",
    required=("name",),
)

TAG_EVENT: Schema = obj(
    {
        "created": string("When the tag pointed at this image.", fmt="date-time"),
        "dockerImageReference": string("The pull spec of the image."),
        "image": string("The image (manifest digest)."),
        "generation": integer("The stream generation when this happened."),
    },
    "One image a tag has pointed at.",
)

TAG_EVENT_CONDITION: Schema = obj(
    {
        "type": string("ImportSuccess."),
        "status": string("True, False or Unknown."),
        "lastTransitionTime": string(fmt="date-time"),
        "reason": string(),
        "message": string(),
        "generation": integer(),
    },
    "A condition of a tag (a failed import).",
)

IMAGE_STREAM: Schema = obj(
    {
        "kind": KIND,
        "apiVersion": API,
        "metadata": OBJECT_META,
        "spec": obj(
            {
                "lookupPolicy": obj({"local": boolean("Resolve short names in the namespace to this stream.")}),
                "dockerImageRepository": string("Deprecated: an external repository to import."),
                # Merged by name, as OpenShift declares them: `kubectl apply` keeps tags it does not manage.
                "tags": keyed_list(array(ref(f"{PREFIX}.TagReference"), "The tags users manage."), "name"),
            },
            "The desired state: the tags and where they point.",
        ),
        "status": obj(
            {
                "dockerImageRepository": string("Where the stream's images are pulled from."),
                "publicDockerImageRepository": string("The same through the public host, when one is configured."),
                "tags": array(
                    obj(
                        {
                            "tag": string(),
                            "items": array(ref(f"{PREFIX}.TagEvent"), "The tag's history, newest first."),
                            "conditions": array(ref(f"{PREFIX}.TagEventCondition")),
                        }
                    ),
                    "Each tag's history.",
                ),
            },
            "The observed state; set by the server.",
        ),
    },
    "A repository of the registry: tags pointing at images, with their history.",
)

IMAGE_LAYER: Schema = obj({"name": string(), "size": integer(), "mediaType": string()})
IMAGE_MANIFEST: Schema = obj(
    {
        "digest": string(),
        "mediaType": string(),
        "manifestSize": integer(),
        "architecture": string(),
        "os": string(),
        "variant": string(),
    }
)
IMAGE: Schema = obj(
    {
        "kind": KIND,
        "apiVersion": API,
        "metadata": OBJECT_META,
        "dockerImageReference": string("A pull spec of the image."),
        "dockerImageMetadata": free_form("The image configuration (created, platform, labels, size)."),
        "dockerImageMetadataVersion": string(),
        "dockerImageManifestMediaType": string(),
        "dockerImageLayers": array(ref(f"{PREFIX}.ImageLayer")),
        "dockerImageManifests": array(ref(f"{PREFIX}.ImageManifest"), "An index's manifests."),
        "dockerImageSignatures": array(string()),
        "dockerImageManifest": string(),
        "dockerImageConfig": string(),
    },
    "An image, named by its manifest digest; cluster-scoped.",
)
IMAGE_STREAM_TAG: Schema = obj(
    {
        "kind": KIND,
        "apiVersion": API,
        "metadata": OBJECT_META,
        "tag": ref(f"{PREFIX}.TagReference", "The spec tag, if any."),
        "generation": integer(),
        "lookupPolicy": obj({"local": boolean()}),
        "conditions": array(ref(f"{PREFIX}.TagEventCondition")),
        "image": ref(f"{PREFIX}.Image", "The image the tag points at."),
    },
    "One tag of a stream (NAME:TAG) and its current image.",
)
IMAGE_STREAM_IMAGE: Schema = obj(
    {"kind": KIND, "apiVersion": API, "metadata": OBJECT_META, "image": ref(f"{PREFIX}.Image")},
    "An image as seen through a stream (NAME@DIGEST).",
)


IMPORT_POLICY: Schema = obj(
    {
        "insecure": boolean("Allow plain HTTP and unverified TLS for the import."),
        "scheduled": boolean("Re-import periodically."),
        "importMode": string("Legacy or PreserveOriginal.", enum=("Legacy", "PreserveOriginal")),
    },
    "How an external image is imported.",
)
REFERENCE_POLICY: Schema = obj(
    {"type": string("Source (the default) or Local.", enum=("Source", "Local"))},
    "Whether consumers pull from the source or through this registry.",
)
IMAGE_STREAM_IMPORT: Schema = obj(
    {
        "kind": KIND,
        "apiVersion": API,
        "metadata": OBJECT_META,
        "spec": obj(
            {
                "import": boolean("Store the result (false: a dry run that only reports)."),
                "images": array(
                    obj(
                        {
                            "from": ref(f"{PREFIX}.ObjectReference", "A DockerImage pull spec."),
                            "to": obj({"name": string("The tag to import into.")}),
                            "importPolicy": IMPORT_POLICY,
                            "referencePolicy": REFERENCE_POLICY,
                            "includeManifest": boolean("Return the manifest in the status."),
                        },
                        "One image to import.",
                    )
                ),
                "repository": obj(
                    {
                        "from": ref(f"{PREFIX}.ObjectReference", "A DockerImage repository, no tag or digest."),
                        "importPolicy": IMPORT_POLICY,
                        "referencePolicy": REFERENCE_POLICY,
                        "includeManifest": boolean(),
                    },
                    "A whole repository to import (its first tags).",
                ),
            },
            "What to import.",
        ),
        "status": free_form("What was imported (set by the server)."),
    },
    "A request to import images from another registry into a stream (create only).",
)


def _list(kind: str) -> Schema:
    return obj(
        {"kind": KIND, "apiVersion": API, "metadata": LIST_META, "items": array(ref(f"{PREFIX}.{kind}"))},
        f"A list of {kind} objects.",
        required=("items",),
    )


COMPONENTS: dict[str, Schema] = {
    f"{PREFIX}.ObjectReference": OBJECT_REFERENCE,
    f"{PREFIX}.TagReference": TAG_REFERENCE,
    f"{PREFIX}.TagEvent": TAG_EVENT,
    f"{PREFIX}.TagEventCondition": TAG_EVENT_CONDITION,
    f"{PREFIX}.ImageStream": IMAGE_STREAM,
    f"{PREFIX}.ImageStreamList": _list("ImageStream"),
    f"{PREFIX}.ImageLayer": IMAGE_LAYER,
    f"{PREFIX}.ImageManifest": IMAGE_MANIFEST,
    f"{PREFIX}.Image": IMAGE,
    f"{PREFIX}.ImageList": _list("Image"),
    f"{PREFIX}.ImageStreamTag": IMAGE_STREAM_TAG,
    f"{PREFIX}.ImageStreamTagList": _list("ImageStreamTag"),
    f"{PREFIX}.ImageStreamImage": IMAGE_STREAM_IMAGE,
    f"{PREFIX}.ImageStreamImport": IMAGE_STREAM_IMPORT,
}

IMAGE_STREAMS = ResourceDef(
    GROUP,
    VERSION,
    "ImageStream",
    "imagestreams",
    namespaced=True,
    verbs=(*READ_VERBS, *WRITE_VERBS),
    schema=f"{PREFIX}.ImageStream",
    short_names=("is",),
    categories=("all",),
    columns=(
        Column("Name", format="name", description="The stream's name"),
        Column("Image Repository", description="Where its images are pulled from"),
        Column("Tags", description="The most recently updated tags"),
        Column("Updated", description="When a tag last moved"),
    ),
)
IMAGE_STREAM_TAGS = ResourceDef(
    GROUP,
    VERSION,
    "ImageStreamTag",
    "imagestreamtags",
    namespaced=True,
    verbs=("get", "list", "watch", "create", "update", "patch", "delete"),
    schema=f"{PREFIX}.ImageStreamTag",
    short_names=("istag",),
    columns=(
        Column("Name", format="name", description="STREAM:TAG"),
        Column("Image Reference", description="The pull spec of the tag's image"),
        Column("Updated", description="When the tag last moved"),
    ),
)
IMAGE_STREAM_IMAGES = ResourceDef(
    GROUP,
    VERSION,
    "ImageStreamImage",
    "imagestreamimages",
    namespaced=True,
    verbs=("get",),
    schema=f"{PREFIX}.ImageStreamImage",
    short_names=("isimage",),
)
IMAGES = ResourceDef(
    GROUP,
    VERSION,
    "Image",
    "images",
    namespaced=False,
    verbs=("get", "list", "watch", "delete"),
    schema=f"{PREFIX}.Image",
    columns=(
        Column("Name", format="name", description="The manifest digest"),
        Column("Image Reference", description="A pull spec of the image"),
    ),
)

IMAGE_STREAM_IMPORTS = ResourceDef(
    GROUP,
    VERSION,
    "ImageStreamImport",
    "imagestreamimports",
    namespaced=True,
    verbs=("create",),
    schema=f"{PREFIX}.ImageStreamImport",
)

RESOURCES = (IMAGE_STREAMS, IMAGE_STREAM_TAGS, IMAGE_STREAM_IMAGES, IMAGES, IMAGE_STREAM_IMPORTS)
