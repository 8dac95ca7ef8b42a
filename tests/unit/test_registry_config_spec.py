"""The Config resource's pure logic: defaults from the config file, validation, what a spec
puts in effect, and the operator's conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from registry.config import config_from_dict
from registry.model.registry_config_spec import (
    Invalid,
    ReplicaView,
    conditions,
    effective,
    initial_spec,
    next_applied,
    normalize_spec,
    spec_from_object,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def fs_config(**http):
    return config_from_dict({"data_dir": "/srv/okura", "http": http})


def s3_config(**s3):
    return config_from_dict(
        {"storage": {"driver": "s3", "s3": {"bucket": "images", "endpoint_url": "http://s3:8333", **s3}}}
    )


def test_initial_spec_comes_from_the_config_file():
    spec = initial_spec(fs_config())
    assert spec["managementState"] == "Managed"
    assert spec["logLevel"] == "Normal" and spec["readOnly"] is False and spec["disableRedirect"] is False
    assert spec["replicas"] == 1 and spec["defaultRoute"] is False
    assert spec["storage"] == {"managementState": "Unmanaged", "filesystem": {"path": "/srv/okura/blobs"}}
    assert spec["requests"]["read"] == {"maxRunning": 0, "maxInQueue": 0, "maxWaitInQueue": "0s"}

    spec = initial_spec(s3_config(redirect=False))
    assert spec["disableRedirect"] is True
    assert spec["storage"]["s3"]["bucket"] == "images"
    assert spec["storage"]["s3"]["regionEndpoint"] == "http://s3:8333"
    debug = config_from_dict({"log": {"level": "debug"}, "http": {"public_url": "https://r.example.com"}})
    assert initial_spec(debug)["logLevel"] == "Debug"
    assert initial_spec(debug)["defaultRoute"] is True


def test_every_invalid_field_is_named():
    with pytest.raises(Invalid) as caught:
        normalize_spec(
            {
                "managementState": "Force",
                "replicas": -1,
                "readOnly": "yes",
                "requests": {"read": {"maxRunning": -2, "maxWaitInQueue": "soon"}},
                "routes": [{"name": "a", "hostname": "x.example.com"}, {"name": "a"}],
                "logLevel": "Loud",
                "surprise": 1,
            },
            fs_config(),
        )
    fields = {c["field"] for c in caught.value.details["causes"]}
    assert fields >= {
        "spec.managementState",
        "spec.replicas",
        "spec.readOnly",
        "spec.requests.read.maxRunning",
        "spec.requests.read.maxWaitInQueue",
        "spec.routes[1].name",
        "spec.logLevel",
        "spec.surprise",
    }


def test_storage_is_shown_but_cannot_be_changed():
    config = s3_config()
    same = initial_spec(config)["storage"]
    assert normalize_spec({"storage": same}, config)["storage"] == same
    assert normalize_spec({"storage": {"s3": {"bucket": "images"}}}, config)["storage"] == same
    with pytest.raises(Invalid) as caught:
        normalize_spec({"storage": {"s3": {"bucket": "other"}}}, config)
    assert "config file" in caught.value.message and "'images'" in caught.value.message
    with pytest.raises(Invalid):
        normalize_spec({"storage": {"pvc": {"claim": "x"}}}, config)


def test_whole_objects_are_checked():
    with pytest.raises(Invalid) as caught:
        spec_from_object({"kind": "ImagePruner", "metadata": {"name": "other"}, "spec": {}}, fs_config())
    assert {c["field"] for c in caught.value.details["causes"]} == {"kind", "metadata.name"}


def test_unmanaged_stores_without_applying():
    config = fs_config()
    applied = normalize_spec({}, config)
    unmanaged = normalize_spec({"managementState": "Unmanaged", "readOnly": True}, config)
    assert next_applied(unmanaged, applied) == applied
    managed = normalize_spec({"readOnly": True}, config)
    assert next_applied(managed, applied)["readOnly"] is True


def test_effective_settings():
    config = fs_config(addr="0.0.0.0:5000", public_url="https://public.example.com")
    spec = normalize_spec(
        {
            "managementState": "Removed",
            "requests": {"write": {"maxRunning": 3, "maxInQueue": 5, "maxWaitInQueue": "1m30s"}},
        },
        config,
    )
    settings = effective(spec, 4, config)
    assert settings.removed and settings.generation == 4
    assert settings.write.max_running == 3 and settings.write.max_wait_in_queue == 90
    assert not settings.read.enabled
    assert settings.public_host == ""
    spec["defaultRoute"] = True
    assert effective(spec, 4, config).public_host == "public.example.com"
    spec["routes"] = [{"name": "r", "hostname": "route.example.com:8443"}]
    assert effective(spec, 4, config).public_host == "route.example.com:8443"


def replica(name="r1", ready=True, lost=False, storage_error=None, reason=None):
    return ReplicaView(name, ready, lost, reason, storage_error, NOW - timedelta(seconds=1))


def by_type(items):
    return {c["type"]: (c["status"], c["reason"]) for c in items}


def test_conditions_of_a_managed_registry():
    spec = normalize_spec({"replicas": 2}, fs_config())
    shown = by_type(conditions(spec, [replica("a"), replica("b")], [], NOW))
    assert shown == {
        "Available": ("True", "Ready"),
        "Progressing": ("False", "Ready"),
        "Degraded": ("False", "AsExpected"),
        "Removed": ("False", "AsExpected"),
        "StorageExists": ("True", "DirectoryExists"),
    }
    shown = by_type(conditions(spec, [replica("a"), replica("b", ready=False, lost=True)], [], NOW))
    assert shown["Available"] == ("True", "MinimumAvailability")
    assert shown["Progressing"] == ("True", "DeploymentNotCompleted")
    assert shown["Degraded"] == ("True", "ReplicaLost")
    error = "NoSuchBucket: S3 bucket 'images' does not exist"
    items = conditions(spec, [replica("a", ready=False, storage_error=error)], [], NOW)
    shown = by_type(items)
    assert shown["Available"] == ("False", "NoReplicasAvailable")
    assert shown["StorageExists"] == ("False", "NoSuchBucket")
    assert next(c for c in items if c["type"] == "StorageExists")["message"] == "S3 bucket 'images' does not exist"


def test_conditions_of_removed_and_unmanaged():
    config = fs_config()
    shown = by_type(conditions(normalize_spec({"managementState": "Removed"}, config), [], [], NOW))
    assert shown["Available"] == ("True", "Removed") and shown["Removed"] == ("True", "Removed")
    assert shown["Degraded"] == ("False", "Removed") and shown["Progressing"] == ("False", "Removed")
    shown = by_type(conditions(normalize_spec({"managementState": "Unmanaged"}, config), [], [], NOW))
    assert shown["Available"] == ("True", "Unmanaged") and shown["Degraded"] == ("False", "Unmanaged")


def test_transition_times_move_only_when_a_status_flips():
    spec = normalize_spec({}, fs_config())
    first = conditions(spec, [replica()], [], NOW)
    later = NOW + timedelta(minutes=5)
    same = conditions(spec, [replica()], first, later)
    assert [c["lastTransitionTime"] for c in same] == [c["lastTransitionTime"] for c in first]
    flipped = conditions(spec, [replica(ready=False, lost=True)], first, later)
    available = next(c for c in flipped if c["type"] == "Available")
    assert available["lastTransitionTime"] == "2026-12-06T12:05:00Z"
