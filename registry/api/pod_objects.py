"""The registry's server processes (registry/model/instances.py) as core/v1 Pods in
openshift-image-registry, the way OpenShift's registry pods look to `kubectl get pods`: one
container named registry, Ready while the server reports itself ready, phase Unknown once its
heartbeat stops. Pure functions of an Instance and the time."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from registry.api.objects import short_age
from registry.kube.meta import timestamp
from registry.model.instances import Instance, reachable_address
from registry.model.registry_config_spec import NAMESPACE

CONTAINER = "registry"
LABELS = {"docker-registry": "default"}
ADDRESS_ANNOTATION = "okura.io/address"
VERSION_ANNOTATION = "okura.io/version"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
_REASON_RE = re.compile(r"([A-Z][A-Za-z]{0,62}): ")


def image(instance: Instance) -> str:
    return f"okura:{instance.version}"


def pod_ip(instance: Instance) -> str:
    """The host of the address it listens on (its machine's name for a wildcard address)."""
    host = reachable_address(instance.address, instance.host, instance.host + ".").rpartition(":")[0]
    return host.strip("[]")


def _ready_condition(instance: Instance, ready: bool, lost: bool) -> dict[str, Any]:
    """Ready True, or False with why: the server's own reason (`Reason: message` when it gives
    one so, as storage errors are), or the heartbeat it stopped sending."""
    condition: dict[str, Any] = {
        "type": "Ready",
        "status": "True" if ready else "False",
        "lastProbeTime": None,
        "lastTransitionTime": timestamp(instance.heartbeat_at if lost else instance.started_at),
    }
    if lost:
        condition["reason"] = "NodeLost"
        condition["message"] = f"no heartbeat since {timestamp(instance.heartbeat_at)}"
    elif not ready:
        why = instance.not_ready_reason or "not ready"
        found = _REASON_RE.match(why)
        condition["reason"] = found.group(1) if found else "ContainersNotReady"
        condition["message"] = why
    return condition


def pod_object(instance: Instance, now: datetime, timeout: float) -> dict[str, Any]:
    """The Pod of a server process, `timeout` seconds of silence making it Unknown."""
    lost = instance.stale(now, timeout)
    ready = instance.ready and not lost
    started = timestamp(instance.started_at)
    container_status: dict[str, Any] = {
        "name": CONTAINER,
        "ready": ready,
        "started": not lost,
        "restartCount": instance.restarts,
        "image": image(instance),
        "imageID": "",
        "state": {"running": {"startedAt": started}},
    }
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": instance.name,
            "namespace": NAMESPACE,
            "uid": instance.uid,
            "creationTimestamp": started,
            "labels": dict(LABELS),
            "annotations": {
                ADDRESS_ANNOTATION: instance.address,
                VERSION_ANNOTATION: instance.version,
                DEFAULT_CONTAINER_ANNOTATION: CONTAINER,
            },
        },
        "spec": {"containers": [{"name": CONTAINER, "image": image(instance)}], "nodeName": instance.host},
        "status": {
            "phase": "Unknown" if lost else "Running",
            "conditions": [_ready_condition(instance, ready, lost)],
            "podIP": pod_ip(instance),
            "startTime": started,
            "containerStatuses": [container_status],
        },
    }


def ready_column(instance: Instance, now: datetime, timeout: float) -> str:
    """READY as kubectl shows it: ready containers / containers."""
    return "1/1" if instance.ready and not instance.stale(now, timeout) else "0/1"


def pod_row(instance: Instance, now: datetime, timeout: float) -> list[Any]:
    """The cells of the Table: NAME READY STATUS RESTARTS AGE, and with -o wide IP NODE."""
    return [
        instance.name,
        ready_column(instance, now, timeout),
        instance.status(now, timeout),
        instance.restarts,
        short_age(instance.started_at, now),
        pod_ip(instance),
        instance.host,
    ]
