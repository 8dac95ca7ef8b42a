"""`okura import-image`, as `oc import-image`: real `okura` processes on an app's database and
storage, importing from CNCF distribution on loopback (plain HTTP, hence --insecure). What the
stream holds afterwards, what the command prints (oc's describe), the rules that refuse an
import, and failures as one line on stderr with exit status 1 (2 for bad usage)."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from registry.errors import ResourceNotFound
from registry.model import streams
from tests.support.backends import SQL_BACKENDS
from tests.support.processes import okura_on
from tests.support.upstreams import Distribution, push_image

pytestmark = pytest.mark.parametrize("backend", SQL_BACKENDS, indirect=True)

HEADER = "imagestream.image.openshift.io/{} imported"


async def okura_import(app, *args: str) -> subprocess.CompletedProcess:
    return await okura_on(app, "import-image", *args)


async def ok(app, *args: str) -> list[str]:
    result = await okura_import(app, *args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout.splitlines()


async def fails(app, *args: str, status: int = 1) -> str:
    result = await okura_import(app, *args)
    assert result.returncode == status, (args, result.returncode, result.stdout, result.stderr)
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    return result.stderr


def registry_of(app):
    return app.app.state.runtime.registry


async def stream_of(app, name: str) -> streams.Stream:
    return await streams.get_stream(registry_of(app), "team", name)


def field(lines: list[str], label: str) -> str:
    """The value of the first `Label:   value` line."""
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(f"{label}:"))


async def push(distribution: Distribution, repo: str, tag: str) -> str:
    async with httpx.AsyncClient(base_url=distribution.url, timeout=30) as client:
        return (await push_image(client, repo, tag)).digest


async def test_a_new_stream_needs_confirm(app, distribution: Distribution):
    source = f"{distribution.host}/test/app:v1"
    err = await fails(app, "team/app:v1", "--from", source, "--insecure")
    assert (
        err == "okura import-image: error: no image stream named team/app exists, pass --confirm to create and import\n"
    )
    with pytest.raises(ResourceNotFound):
        await stream_of(app, "app")


async def test_import_one_tag(app, distribution: Distribution):
    pushed = distribution.images["app"]
    source = f"{distribution.host}/test/app:v1"
    reference = f"{distribution.host}/test/app@{pushed.digest}"
    result = await okura_import(app, "app:v1", "-n", "team", "--from", source, "--insecure", "--confirm")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == [HEADER.format("app"), ""]
    assert (field(lines, "Name"), field(lines, "Namespace")) == ("app", "team")
    assert field(lines, "Image Repository").endswith("/team/app")
    assert (field(lines, "Unique Images"), field(lines, "Tags")) == ("1", "1")
    tag = lines.index("v1")
    assert lines[tag + 1 : tag + 5] == [
        f"  tagged from {source}",
        "    will use insecure HTTPS or HTTP connections",
        "",
        f"  * {reference}",
    ]
    assert lines[tag + 5].endswith(" ago")
    # Then the image, as oc's describe shows it.
    assert field(lines, "Image Name") == "app:v1"
    assert field(lines, "Docker Image") == reference
    image = lines[next(i for i, line in enumerate(lines) if line.startswith("Image Name:")) :]
    assert field(image, "Name") == pushed.digest
    assert field(lines, "Image Size").endswith(" in 2 layers")
    assert field(lines, "Arch") == "amd64" and field(lines, "OS") == "linux"

    stream = await stream_of(app, "app")
    spec = stream.spec_tag("v1")
    assert (spec.from_kind, spec.from_name, spec.insecure, spec.reference_policy) == (
        "DockerImage",
        source,
        True,
        "Source",
    )
    [item] = stream.status_tag("v1").items
    assert (item.image, item.reference) == (pushed.digest, reference)


async def test_dry_run_stores_nothing(app, distribution: Distribution):
    source = f"{distribution.host}/test/app:v1"
    lines = await ok(app, "team/dry:v1", "--from", source, "--insecure", "--dry-run")  # no --confirm needed
    assert lines[:2] == [f"{HEADER.format('dry')} (dry run)", ""]
    assert not any(line.startswith("Namespace:") for line in lines)  # no stream to describe
    assert field(lines, "Image Name") == "dry:v1"
    assert field(lines, "Docker Image") == f"{distribution.host}/test/app@{distribution.images['app'].digest}"
    with pytest.raises(ResourceNotFound):
        await stream_of(app, "dry")


async def test_all_from_a_repository_up_to_the_limit(make_app, distribution: Distribution):
    for tag in ("1.0", "1.1", "latest"):
        await push(distribution, "cli/many", tag)
    app = await make_app(imports={"max_tags_per_repository": 2})
    repository = f"{distribution.host}/cli/many"
    refused = await fails(app, "team/many", "--all", "--from", f"{repository}:latest", "--confirm", status=2)
    assert "names a tag or digest" in refused
    assert "as well as --all" in await fails(app, "team/many:1.0", "--all", "--from", repository, status=2)

    result = await okura_import(app, "team/many", "--all", "--from", repository, "--insecure", "--confirm")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("info: The remote repository contained 1 additional tags which were not imported: 1.0\n")
    lines = result.stdout.splitlines()
    assert lines[0] == HEADER.format("many") and field(lines, "Tags") == "2"
    assert f"  tagged from {repository}:latest" in lines and f"  tagged from {repository}:1.1" in lines
    assert not any(line.startswith("Image Name:") for line in lines)  # --all: the stream only
    stream = await stream_of(app, "many")
    assert sorted(t.tag for t in stream.status_tags) == ["1.1", "latest"]


async def test_reimport_an_existing_tag_from_its_own_source(app, distribution: Distribution):
    first = await push(distribution, "cli/moving", "v1")
    source = f"{distribution.host}/cli/moving:v1"
    await ok(app, "team/moving:v1", "--from", source, "--insecure", "--confirm")
    second = await push(distribution, "cli/moving", "v1")

    # No --from and no --insecure: the tag's own source and flags.
    lines = await ok(app, "team/moving:v1")
    assert lines[0] == HEADER.format("moving")
    moved = f"{distribution.host}/cli/moving@{second}"
    assert f"  * {moved}" in lines and f"    {distribution.host}/cli/moving@{first}" in lines
    assert field(lines, "Docker Image") == moved
    stream = await stream_of(app, "moving")
    assert [i.image for i in stream.status_tag("v1").items] == [second, first]
    assert stream.spec_tag("v1").insecure is True

    # --scheduled adds to the tag's flags; --all without --from imports every such tag again.
    lines = await ok(app, "team/moving:v1", "--scheduled")
    assert f"  updates automatically from registry {source}" in lines
    lines = await ok(app, "team/moving", "--all")
    assert lines[0] == HEADER.format("moving") and not any(x.startswith("Image Name:") for x in lines)
    spec = (await stream_of(app, "moving")).spec_tag("v1")
    assert (spec.from_name, spec.insecure, spec.scheduled) == (source, True, True)


async def test_a_failed_import_is_an_error_and_a_condition(app, distribution: Distribution):
    missing = f"{distribution.host}/test/app:nope"
    result = await okura_import(app, "team/broken:nope", "--from", missing, "--insecure", "--confirm")
    assert result.returncode == 1, (result.stdout, result.stderr)
    [error] = result.stderr.splitlines()
    assert error.startswith("error: tag nope failed: ") and distribution.host in error, error
    lines = result.stdout.splitlines()
    assert lines[0] == f"{HEADER.format('broken')} with errors"
    failed = next(line for line in lines if line.startswith("  ! error: Import failed (NotFound): "))
    assert lines[lines.index(failed) + 1].endswith(" ago")
    assert not any(line.startswith("Image Name:") for line in lines)
    [condition] = (await stream_of(app, "broken")).status_tag("nope").conditions
    assert (condition.type, condition.status, condition.reason) == ("ImportSuccess", "False", "NotFound")


async def test_rules_that_refuse_an_import(app, distribution: Distribution):
    source = f"{distribution.host}/test/app:v1"
    await ok(app, "team/app:v1", "--from", source, "--insecure", "--confirm")
    version = (await stream_of(app, "app")).resource_version

    other = f"{distribution.host}/test/multi:latest"
    err = await fails(app, "team/app:v1", "--from", other, "--insecure")
    assert "use the 'okura tag' command if you want to change the source" in err and other in err
    err = await fails(app, "team/app:v2")
    assert "does not exist on the image stream team/app" in err and "--from" in err and "okura tag" in err

    digest = distribution.images["app"].digest
    err = await fails(app, f"team/app@{digest}", status=2)
    assert err == "okura import-image: error: to import images by ID, use the 'tag' command\n"
    assert "names no namespace" in await fails(app, "app:v1", status=2)
    assert "--from:" in await fails(app, "team/app:v1", "--from", "UPPER CASE/x", status=2)
    assert (await stream_of(app, "app")).resource_version == version  # nothing written

    # A tag that is a copy of an image of this registry is not imported.
    tagged = await okura_on(app, "tag", "team/app:v1", "team/app:copy")
    assert tagged.returncode == 0, tagged.stderr
    version = (await stream_of(app, "app")).resource_version
    assert "it cannot be re-imported" in await fails(app, "team/app:copy")
    assert (await stream_of(app, "app")).resource_version == version


async def test_local_reference_policy_is_kept(app, distribution: Distribution):
    digest = distribution.images["app"].digest
    source = f"{distribution.host}/test/app:v1"
    lines = await ok(app, "team/local:v1", "--from", source, "--insecure", "--confirm", "--reference-policy", "local")
    assert "    prefer registry pullthrough when referencing this tag" in lines
    current = next(line for line in lines if line.startswith("  * "))
    assert current.endswith(f"/team/local@{digest}") and distribution.host not in current
    assert (await stream_of(app, "local")).spec_tag("v1").reference_policy == "Local"
    await ok(app, "team/local:v1")  # no --reference-policy: the tag keeps its own
    assert (await stream_of(app, "local")).spec_tag("v1").reference_policy == "Local"


async def test_preserve_original_keeps_the_index(app, distribution: Distribution):
    index, children = distribution.images["multi"]
    source = f"{distribution.host}/test/multi:latest"
    lines = await ok(
        app, "team/multi", "--from", source, "--insecure", "--confirm", "--import-mode", "PreserveOriginal"
    )
    assert field(lines, "Image Name") == "multi:latest"
    assert field(lines, "Docker Image") == f"{distribution.host}/test/multi@{index.digest}"
    manifests = lines.index(next(line for line in lines if line.startswith("Manifests:")))
    assert [line.split()[-2:] for line in lines[manifests : manifests + 2]] == [
        ["linux/amd64", children[0].digest],
        ["linux/arm64", children[1].digest],
    ]
    stream = await stream_of(app, "multi")
    assert stream.status_tag("latest").items[0].image == index.digest
    assert stream.spec_tag("latest").import_mode == "PreserveOriginal"


async def test_output_json_is_the_api_answer(app, distribution: Distribution):
    source = f"{distribution.host}/test/app:v1"
    result = await okura_import(app, "team/app:v1", "--from", source, "--insecure", "--confirm", "-o", "json")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    answer = json.loads(result.stdout)
    assert (answer["kind"], answer["apiVersion"]) == ("ImageStreamImport", "image.openshift.io/v1")
    assert answer["metadata"]["namespace"] == "team" and answer["metadata"]["name"] == "app"
    assert answer["spec"]["import"] is True
    assert answer["spec"]["images"] == [
        {
            "from": {"kind": "DockerImage", "name": source},
            "to": {"name": "v1"},
            "importPolicy": {"insecure": True, "scheduled": False},
        }
    ]
    [entry] = answer["status"]["images"]
    assert entry["status"]["status"] == "Success" and entry["tag"] == "v1"
    assert entry["image"]["metadata"]["name"] == distribution.images["app"].digest
    stream = answer["status"]["import"]
    assert stream["kind"] == "ImageStream" and stream["spec"]["tags"][0]["from"]["name"] == source
    assert answer["metadata"]["resourceVersion"] == stream["metadata"]["resourceVersion"]
