"""Pure logic of imports: the order a repository's tags are imported in, the platform Legacy mode
keeps from a manifest list, how a spec tag is (re)written, and the scheduler's token bucket."""

from __future__ import annotations

from registry.model.imports import ImportSource, _spec_tag_for, choose_platform, prioritize_tags
from registry.model.streams import TagReference
from registry.tasks.import_controller import TokenBucket


def test_tags_in_openshifts_order():
    tags = ["b", "1.2.3", "latest", "v2.0", "1.10", "a", "2.0.1", "1.9", ""]
    assert prioritize_tags(tags) == ["latest", "v2.0", "1.10", "1.9", "2.0.1", "1.2.3", "a", "b"]


def test_duplicate_and_empty_tags_are_one_latest():
    assert prioritize_tags(["", "latest", "x", "x"]) == ["latest", "x"]


def index(*platforms: tuple[str, str]) -> dict:
    return {
        "manifests": [
            {"digest": f"sha256:{i}", "platform": {"os": os_, "architecture": arch}}
            for i, (os_, arch) in enumerate(platforms)
        ]
    }


def test_legacy_keeps_the_preferred_then_default_platform():
    doc = index(("linux", "arm64"), ("linux", "amd64"), ("windows", "amd64"))
    assert choose_platform(doc, "", "", "linux/amd64") == "sha256:1"
    assert choose_platform(doc, "", "arm64", "linux/amd64") == "sha256:0"
    assert choose_platform(doc, "windows", "amd64", "linux/arm64") == "sha256:2"
    assert choose_platform(doc, "windows", "", "linux/arm64") == "sha256:0"  # no windows/arm64: the default
    assert choose_platform(doc, "", "", "linux/arm64") == "sha256:0"


def test_legacy_falls_back_to_the_first_real_platform():
    doc = index(("unknown", "unknown"), ("linux", "s390x"))
    assert choose_platform(doc, "", "", "linux/amd64") == "sha256:1"
    assert choose_platform({"manifests": []}, "", "", "linux/amd64") is None


def test_spec_tag_keeps_flags_and_an_explicit_reference_policy():
    prior = TagReference(
        "v1", "DockerImage", "quay.io/a/b:v1", insecure=True, scheduled=True, reference_policy="Local", generation=4
    )
    again = _spec_tag_for(ImportSource("quay.io/a/b:v1", "v1"), prior, "Legacy")
    assert (again.insecure, again.scheduled, again.reference_policy, again.generation) == (True, True, "Local", 4)
    moved = _spec_tag_for(ImportSource("quay.io/a/c:v1", "v1"), prior, "Legacy")
    assert (moved.insecure, moved.scheduled, moved.reference_policy) == (False, False, "Local")
    new = _spec_tag_for(ImportSource("quay.io/a/b:v1", "v1", import_mode=None), None, "PreserveOriginal")
    assert (new.import_mode, new.reference_policy) == ("PreserveOriginal", "Source")


def test_token_bucket_limits_a_burst_then_refills(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("registry.tasks.import_controller.time.monotonic", lambda: now[0])
    bucket = TokenBucket(60)  # a token a second, bursts of 120
    assert all(bucket.take() for _ in range(120))
    assert not bucket.take()
    now[0] += 5
    assert sum(bucket.take() for _ in range(10)) == 5
    assert TokenBucket(0).take(10_000)  # 0: no limit
