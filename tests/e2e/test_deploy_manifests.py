"""The deployment files against the real code: the Dockerfile (read, not built: building
needs base images from the internet), the Kustomize overlays as `kubectl kustomize` renders
them, and deploy/compose.yaml.

Every OKURA_* variable they set is a real setting (registry.config.unknown_env_keys), every
config file loads with registry.config.load_config (with the variables of the container
that mounts it), every command parses with the real `okura` parser, and the probe paths
answer 200 on a real `okura serve`. tests/e2e/test_arbitrary_uid.py runs the image's
arbitrary-UID, read-only-root story for real.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import posixpath
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from registry.cli.common import load
from registry.cli.main import build_parser
from registry.config import Config, load_config, unknown_env_keys
from tests.support.kubectl import require_kubectl
from tests.support.servers import OkuraServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("single", "ha")
NAMESPACE = "openshift-image-registry"
POD_LABELS = {"docker-registry": "default"}
DATA_DIR = "/var/lib/okura"
POD_NAME = "image-registry-5d8f7c9b4-x2k7q"  # what metadata.name gives a pod


# -- the Dockerfile ---------------------------------------------------------------------------


@dataclass
class Stage:
    """The instructions of one build stage, continuation lines joined."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [rest for instr, rest in self.instructions if instr == name]

    def last(self, name: str) -> str:
        found = self.all(name)
        assert found, f"the final stage has no {name}"
        return found[-1]

    def exec_form(self, name: str) -> list[str]:
        """ENTRYPOINT or CMD, which must be in JSON (exec) form: no shell in between."""
        text = self.last(name)
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{name} {text}: not exec form"
        return value

    def env(self) -> dict[str, str]:
        result: dict[str, str] = {}
        for text in self.all("ENV"):
            for item in shlex.split(text):
                key, sep, value = item.partition("=")
                assert sep, f"ENV {text}: use KEY=VALUE"
                result[key] = value
        return result


def dockerfile_stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    text = re.sub(r"\\\n", " ", path.read_text())
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), " ".join(rest.split())
        if instr == "FROM":
            stages.append(Stage(rest))
        else:
            assert stages, f"{instr} before FROM"
            stages[-1].instructions.append((instr, rest))
    return stages


def image() -> Stage:
    """The final stage: what runs."""
    return dockerfile_stages()[-1]


def image_argv(args: list[str] | None = None) -> list[str]:
    """What the container runs: the image's ENTRYPOINT, then `args` (or its CMD)."""
    stage = image()
    return [*stage.exec_form("ENTRYPOINT"), *(stage.exec_form("CMD") if args is None else args)]


def parse_okura(argv: list[str], where: str) -> Any:
    """argv (`okura ...`) parsed by the real command line: an unknown command, flag or bad
    value fails the test with argparse's message."""
    assert argv and argv[0] == "okura", f"{where}: runs {argv[:1]}, not okura"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse (argparse's message above)")


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last pattern that
    matches it or a directory above it decides (`!` includes again, `**/` is any depth)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch(posixpath.basename(c), pattern[3:]) for c in candidates)
        else:
            hit = any(fnmatch(c, pattern) for c in candidates)
        if hit:
            excluded = not negate
    return excluded


def test_dockerfile_runs_as_a_numeric_non_root_user():
    user = image().last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: must be a numeric non-root UID (runAsNonRoot checks it)"
    assert gid in ("", "0"), f"USER {user}: the group must be 0 (OpenShift runs arbitrary UIDs in group 0)"


def test_dockerfile_data_dir_belongs_to_group_zero_and_is_group_writable():
    stage = image()
    runs = " && ".join(stage.all("RUN"))
    assert re.search(rf"(chgrp -R 0|chown -R \d*:0) {DATA_DIR}\b", runs), runs
    assert re.search(rf"chmod -R g=u {DATA_DIR}\b", runs), runs
    env = stage.env()
    assert env.get("HOME") == DATA_DIR, "HOME must be the data directory (an arbitrary UID has no home)"
    assert env.get("OKURA_DATA_DIR") == DATA_DIR
    assert json.loads(stage.last("VOLUME")) == [DATA_DIR]
    assert stage.last("WORKDIR") == DATA_DIR, "the working directory must be writable too"
    assert "5000" in stage.last("EXPOSE").split()


def test_dockerfile_settings_come_from_the_environment_and_the_config_file(tmp_path, monkeypatch):
    stage = image()
    env = stage.env()
    assert unknown_env_keys(env) == [], "the image sets OKURA_* variables that are no settings"
    argv = image_argv()
    assert argv[:2] == ["okura", "serve"], argv
    args = parse_okura(argv, "Dockerfile CMD")
    assert args.addr is None and args.data_dir is None and args.config is None, (
        f"{argv}: a flag would beat OKURA_HTTP_ADDR, OKURA_DATA_DIR and the config file"
    )
    # Nothing set: the listen address is the config default.
    assert load_config(None, environ=env).http.addr == "0.0.0.0:5000"
    # OKURA_HTTP_ADDR is honoured ...
    assert load_config(None, environ={**env, "OKURA_HTTP_ADDR": "0.0.0.0:8080"}).http.addr == "0.0.0.0:8080"
    # ... and so is a config file named by OKURA_CONFIG, read the way the CLI reads it.
    config_file = tmp_path / "config.yaml"
    config_file.write_text("http:\n  addr: 0.0.0.0:7000\nlog:\n  format: json\n")
    for key in [k for k in os.environ if k.startswith("OKURA_")]:
        monkeypatch.delenv(key)
    for key, value in {**env, "OKURA_CONFIG": str(config_file)}.items():
        monkeypatch.setenv(key, value)
    config = load(parse_okura(argv, "Dockerfile CMD"))
    assert (config.http.addr, config.log.format, config.data_dir) == ("0.0.0.0:7000", "json", DATA_DIR)


def test_dockerfile_copies_only_what_exists_and_is_in_the_build_context():
    for stage in dockerfile_stages():
        for text in stage.all("COPY"):
            words = text.split()
            if any(w.startswith("--from") for w in words):
                continue
            for source in [w for w in words if not w.startswith("--")][:-1]:
                assert (ROOT / source).exists(), f"COPY {text}: {source} does not exist"
                assert not dockerignored(source), f"COPY {text}: .dockerignore leaves {source} out"
    for unwanted in (".git", ".venv", "tests", "data"):
        assert dockerignored(unwanted), f".dockerignore should leave {unwanted} out"


def test_dockerfile_healthcheck_runs_the_copied_script():
    stage = image()
    check = stage.last("HEALTHCHECK")
    command = json.loads(check.split(" CMD ", 1)[1])
    assert command[0] == "python", command
    copies = {text.split()[-1]: text.split()[-2] for text in stage.all("COPY") if "--from" not in text}
    assert command[1] in copies, f"HEALTHCHECK runs {command[1]}, which no COPY puts in the image"
    assert copies[command[1]] == "deploy/image/healthcheck.py"
    start = re.search(r"--start-period=(\d+)s", check)
    assert start and int(start.group(1)) >= Config().database.wait_at_start, (
        "the start period must cover database.wait_at_start"
    )


# -- a real server for the probe paths -------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[OkuraServer]:
    okura = OkuraServer(tmp_path_factory.mktemp("deploy") / "data").start()
    yield okura
    okura.stop()


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OKURA_")}
    return subprocess.run(
        [sys.executable, str(DEPLOY / "image" / "healthcheck.py")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_healthcheck_script_asks_the_configured_address(server, tmp_path):
    assert run_healthcheck({"OKURA_HTTP_ADDR": f"0.0.0.0:{server.port}"}).returncode == 0
    config_file = tmp_path / "config.yaml"
    config_file.write_text(f"http:\n  addr: 127.0.0.1:{server.port}\n")
    assert run_healthcheck({"OKURA_CONFIG": str(config_file)}).returncode == 0
    closed = run_healthcheck({"OKURA_HTTP_ADDR": "127.0.0.1:1"})
    assert closed.returncode == 1 and "okura-healthcheck" in closed.stderr


class _OldServer(http.server.BaseHTTPRequestHandler):
    """A server without /readyz: 404 there, 200 at /healthz."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_healthcheck_script_falls_back_to_healthz():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OldServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert run_healthcheck({"OKURA_HTTP_ADDR": f"127.0.0.1:{httpd.server_port}"}).returncode == 0
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- the Kustomize overlays -------------------------------------------------------------------------


class Rendered:
    """The documents `kubectl kustomize deploy/overlays/NAME` prints."""

    def __init__(self, name: str, docs: list[dict[str, Any]]):
        self.name = name
        self.docs = docs

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} {name or ''}"
        return found[0]

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment", "image-registry")

    def workloads(self) -> list[tuple[str, dict[str, Any]]]:
        """(where, pod spec) of every Deployment and Job."""
        found = []
        for doc in self.docs:
            if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                found.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]))
            elif doc["kind"] == "CronJob":
                found.append(
                    (f"CronJob/{doc['metadata']['name']}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
                )
        return found

    def containers(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(where, pod spec, container) of every container and init container."""
        return [
            (f"{where} {c['name']}", spec, c)
            for where, spec in self.workloads()
            for c in [*spec.get("initContainers", []), *spec["containers"]]
        ]

    def object_data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's or Secret's data, decoded."""
        obj = self.one(kind, name)
        data = dict(obj.get("stringData") or {})
        for key, value in (obj.get("data") or {}).items():
            data[key] = base64.b64decode(value).decode() if kind == "Secret" else value
        return data

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        """The container's environment as a pod would get it (field references: a pod name)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            kind, ref = (
                ("ConfigMap", source["configMapRef"]) if "configMapRef" in source else ("Secret", source["secretRef"])
            )
            for key, value in self.object_data(kind, ref["name"]).items():
                env[source.get("prefix", "") + key] = value
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = str(item["value"])
                continue
            source = item["valueFrom"]
            if "secretKeyRef" in source or "configMapKeyRef" in source:
                kind, ref = (
                    ("Secret", source["secretKeyRef"])
                    if "secretKeyRef" in source
                    else ("ConfigMap", source["configMapKeyRef"])
                )
                data = self.object_data(kind, ref["name"])
                assert ref["key"] in data, (
                    f"{self.name}: {item['name']}: {kind} {ref['name']} has no key {ref['key']!r} ({sorted(data)})"
                )
                env[item["name"]] = data[ref["key"]]
            elif "fieldRef" in source:
                env[item["name"]] = {"metadata.name": POD_NAME, "metadata.namespace": NAMESPACE}.get(
                    source["fieldRef"]["fieldPath"], "x"
                )
            else:
                env[item["name"]] = "x"
        return env

    def mounted_file(
        self, spec: dict[str, Any], container: dict[str, Any], path: str
    ) -> tuple[dict[str, Any], str] | None:
        """(volume, key) of the configMap or secret volume that provides file `path`."""
        for mount in container.get("volumeMounts", []):
            directory = mount["mountPath"].rstrip("/")
            if posixpath.dirname(path) != directory or "subPath" in mount:
                continue
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            source = volume.get("configMap") or volume.get("secret")
            if source is None:
                continue
            name = posixpath.basename(path)
            if "items" not in source:
                return volume, name  # every key is a file
            projected = {i["path"]: i["key"] for i in source["items"]}
            if name in projected:
                return volume, projected[name]
        return None

    def config_of(self, spec: dict[str, Any], container: dict[str, Any], tmp_path: Path) -> Config:
        """The container's effective configuration: its config file (from the ConfigMap that
        OKURA_CONFIG names) with its environment, loaded by registry.config.load_config."""
        env = self.env(container)
        path = env.get("OKURA_CONFIG")
        if not path:
            return load_config(None, environ=env)
        found = self.mounted_file(spec, container, path)
        assert found, f"{self.name}: OKURA_CONFIG={path} is not a file of a mounted ConfigMap"
        volume, key = found
        assert "configMap" in volume, f"{self.name}: OKURA_CONFIG={path} is not in a ConfigMap"
        data = self.object_data("ConfigMap", volume["configMap"]["name"])
        assert key in data, f"{self.name}: ConfigMap {volume['configMap']['name']} has no {key}"
        local = tmp_path / f"{self.name}-{container['name']}-{key}"
        local.write_text(data[key])
        return load_config(str(local), environ=env)


def kustomize(name: str) -> Rendered:
    require_kubectl()
    done = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "overlays" / name)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"kubectl kustomize deploy/overlays/{name}:\n{done.stderr}"
    return Rendered(name, [d for d in yaml.safe_load_all(done.stdout) if d])


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> Rendered:
    return kustomize(request.param)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) matches."""
    if not selector:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": labels.get(key) in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def test_objects_are_named_and_labelled_as_openshift_has_them(overlay):
    deployment = overlay.deployment
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert POD_LABELS.items() <= labels.items()
    assert selects(deployment["spec"]["selector"], labels)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["registry"]
    for doc in overlay.docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{doc['kind']}/{doc['metadata']['name']}"
    service = overlay.one("Service", "image-registry")
    assert service["spec"]["selector"] == POD_LABELS
    (port,) = service["spec"]["ports"]
    assert port["port"] == 5000
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert ports.get(port["targetPort"], port["targetPort"]) == 5000
    assert pod["spec"]["serviceAccountName"] == "registry"
    overlay.one("ServiceAccount", "registry")
    # Kubernetes kills the pod after its grace period: the drain must end before that.
    http = Config().http
    assert pod["spec"]["terminationGracePeriodSeconds"] >= http.shutdown_delay + http.drain_timeout + 3


def test_every_okura_variable_is_a_setting(overlay):
    for where, _, container in overlay.containers():
        env = overlay.env(container)
        assert unknown_env_keys(env) == [], f"{overlay.name} {where}: no such settings"


def test_every_config_file_loads(overlay, tmp_path):
    """Each config file on its own, and as each container sees it (file plus environment)."""
    files = 0
    for config_map in overlay.of_kind("ConfigMap"):
        for key, text in (config_map.get("data") or {}).items():
            if key.endswith((".yaml", ".yml")):
                path = tmp_path / key
                path.write_text(text)
                load_config(str(path), environ={})
                files += 1
    assert files, f"{overlay.name}: no config file in a ConfigMap"
    for where, spec, container in overlay.containers():
        config = overlay.config_of(spec, container, tmp_path)
        assert config.data_dir == DATA_DIR, where


def test_commands_parse_with_the_real_cli(overlay):
    seen = set()
    for where, _, container in overlay.containers():
        if container.get("command"):
            argv = [*container["command"], *container.get("args", [])]
        else:
            argv = image_argv(container.get("args"))
        args = parse_okura(argv, f"{overlay.name} {where}")
        seen.add(args.command)
        if args.command == "serve":
            assert args.addr is None, f"{where}: --addr would beat OKURA_HTTP_ADDR and the config file"
        if args.command == "migrate":
            assert args.wait and args.wait >= 60, f"{where}: give the database time to come up (--wait)"
    assert "serve" in seen


@pytest.mark.parametrize("probe", ["startupProbe", "livenessProbe", "readinessProbe"])
def test_probes_answer_on_a_real_server(overlay, probe, server):
    container = overlay.deployment["spec"]["template"]["spec"]["containers"][0]
    check = container[probe]["httpGet"]
    expected = {"startupProbe": "/livez", "livenessProbe": "/livez", "readinessProbe": "/readyz"}[probe]
    assert check["path"] == expected
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports.get(check["port"], check["port"]) == 5000
    assert check.get("scheme", "HTTP") == "HTTP"
    answer = httpx.get(server.url + check["path"], timeout=10)
    assert answer.status_code == 200, f"{check['path']}: {answer.status_code} {answer.text}"
    assert container[probe].get("timeoutSeconds", 1) >= 3, "readiness checks take up to 2s"


def test_healthz_answers_too(server):
    assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def test_containers_are_locked_down(overlay):
    for where, spec, container in overlay.containers():
        pod, own = spec.get("securityContext") or {}, container.get("securityContext") or {}

        def effective(key: str, own=own, pod=pod) -> Any:
            return own.get(key, pod.get(key))

        assert effective("runAsNonRoot") is True, where
        assert effective("runAsUser") != 0, where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("readOnlyRootFilesystem") is True, where
        assert "ALL" in (own.get("capabilities") or {}).get("drop", []), where
        assert not (own.get("capabilities") or {}).get("add"), where
        assert (effective("seccompProfile") or {}).get("type") == "RuntimeDefault", where
        assert own.get("privileged") in (None, False), where
        for volume in spec.get("volumes", []):
            kinds = set(volume) - {"name"}
            assert kinds <= {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI"}, (
                f"{where}: volume {volume['name']} is not allowed by the restricted Pod Security Standard"
            )
    namespace = overlay.one("Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted"


def test_the_read_only_root_leaves_the_data_dir_and_tmp_writable(overlay, tmp_path):
    for where, spec, container in overlay.containers():
        config = overlay.config_of(spec, container, tmp_path)
        writable = {}
        for mount in container.get("volumeMounts", []):
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            if not mount.get("readOnly") and ("emptyDir" in volume or "persistentVolumeClaim" in volume):
                writable[mount["mountPath"].rstrip("/")] = volume
        assert config.data_dir in writable, f"{where}: the data directory {config.data_dir} is on the read-only root"
        assert "/tmp" in writable, f"{where}: no writable /tmp"
        if config.storage.driver == "filesystem":
            assert any(config.storage_root.startswith(p + "/") for p in writable), where


def test_resources_and_instance_name(overlay):
    for where, _, container in overlay.containers():
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind) or {}), f"{where}: resources.{kind}"
    registry = overlay.deployment["spec"]["template"]["spec"]["containers"][0]
    (item,) = [e for e in registry["env"] if e["name"] == "OKURA_HTTP_INSTANCE_NAME"]
    assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_single_overlay_keeps_one_replica_on_a_volume(tmp_path):
    overlay = kustomize("single")
    deployment = overlay.deployment
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    spec = deployment["spec"]["template"]["spec"]
    (data,) = [v for v in spec["volumes"] if v["name"] == "data"]
    assert set(data) == {"name", "persistentVolumeClaim"}, data
    overlay.one("PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    config = overlay.config_of(spec, spec["containers"][0], tmp_path)
    assert config.database_url == f"sqlite:///{DATA_DIR}/okura.db"
    assert config.storage.driver == "filesystem"


def test_ha_overlay_runs_replicas_on_shared_backends(tmp_path):
    overlay = kustomize("ha")
    deployment = overlay.deployment
    replicas = deployment["spec"]["replicas"]
    assert replicas >= 3
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    spec = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    registry = spec["containers"][0]
    config = overlay.config_of(spec, registry, tmp_path)
    assert config.database_url.startswith("postgresql://")
    assert config.storage.driver == "s3" and config.storage.s3.bucket
    assert config.storage.s3.access_key and config.storage.s3.secret_key
    # Credentials come from Secrets, never from the ConfigMap or a literal.
    from_secrets = {e["name"] for e in registry["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {"OKURA_DATABASE_URL", "OKURA_STORAGE_S3_ACCESS_KEY", "OKURA_STORAGE_S3_SECRET_KEY"} <= from_secrets
    # Every replica has the same key for pull secrets, from a Secret.
    found = overlay.mounted_file(spec, registry, config.secrets_key_file)
    assert found and "secret" in found[0], f"secrets.key_file {config.secrets_key_file} is not a mounted Secret"
    volume, key = found
    assert key in overlay.object_data("Secret", volume["secret"]["secretName"])
    (data,) = [v for v in spec["volumes"] if v["name"] == "data"]
    assert "emptyDir" in data
    # The schema is migrated before a pod serves: an init container (or a Job) runs okura migrate.
    migrations = [c for _, _, c in overlay.containers() if (c.get("args") or c.get("command") or [])[:1] == ["migrate"]]
    assert migrations, "nothing runs okura migrate"
    for container in migrations:
        assert overlay.config_of(spec, container, tmp_path).database_url == config.database_url
    pdb = overlay.one("PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"], labels), "the PodDisruptionBudget selects no registry pod"
    if "minAvailable" in pdb["spec"]:
        assert 1 <= pdb["spec"]["minAvailable"] < replicas
    else:
        assert pdb["spec"]["maxUnavailable"] == 1
    constraints = spec["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} >= {"kubernetes.io/hostname"}
    assert all(selects(c["labelSelector"], labels) for c in constraints)
    policy = overlay.one("NetworkPolicy")
    assert selects(policy["spec"]["podSelector"], labels)
    assert any(p["port"] == 5000 for rule in policy["spec"]["ingress"] for p in rule.get("ports", []))


def test_ha_secret_references_name_existing_keys():
    overlay = kustomize("ha")
    secrets = {s["metadata"]["name"] for s in overlay.of_kind("Secret")}
    references = 0
    for where, spec, container in overlay.containers():
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] in secrets, f"{where}: {item['name']} names Secret {ref['name']}, not rendered"
                assert ref["key"] in overlay.object_data("Secret", ref["name"]), f"{where}: {item['name']}"
                references += 1
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                name = volume["secret"]["secretName"]
                assert name in secrets, f"{where}: volume {volume['name']} names Secret {name}, not rendered"
                data = overlay.object_data("Secret", name)
                for item in volume["secret"].get("items", []):
                    assert item["key"] in data, f"{where}: volume {volume['name']}: no key {item['key']}"
                references += 1
    assert references >= 4


# -- deploy/compose.yaml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def okura_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if str(s.get("image", "")).startswith("okura")}


def test_compose_okura_services_use_real_settings_and_commands(compose):
    services = okura_services(compose)
    commands: dict[str, str] = {}
    for name, service in services.items():
        env = compose_env(service)
        assert unknown_env_keys(env) == [], f"compose {name}: no such settings"
        config = load_config(None, environ={**image().env(), **env})
        assert config.database_url.startswith("postgresql://") and config.storage.driver == "s3", name
        if "entrypoint" in service:
            continue  # a helper that uses the image for something else (the secrets key)
        command = service["command"]
        argv = image_argv(shlex.split(command) if isinstance(command, str) else command)
        commands[name] = parse_okura(argv, f"compose {name}").command
    replicas = [n for n, c in commands.items() if c == "serve"]
    assert len(replicas) >= 2, commands
    assert "migrate" in commands.values()
    names = {compose_env(services[n])["OKURA_HTTP_INSTANCE_NAME"] for n in replicas}
    assert len(names) == len(replicas), "each replica needs its own instance name"
    migrate = next(n for n, c in commands.items() if c == "migrate")
    for name in replicas:
        service = services[name]
        assert service["depends_on"][migrate]["condition"] == "service_completed_successfully"
        assert service.get("hostname") == name, "replicas reach each other (log forwarding) by host name"
        assert service.get("read_only") is True
        mounts = [t.split(":")[0] for t in service.get("tmpfs", [])]
        assert DATA_DIR in mounts and "/tmp" in mounts, "the data dir and /tmp must be writable"
        key_file = compose_env(service)["OKURA_SECRETS_KEY_FILE"]
        assert any(v.split(":")[1] == posixpath.dirname(key_file) for v in service.get("volumes", []))


def test_compose_backends_match_the_okura_settings(compose):
    services = compose["services"]
    env = compose_env(next(iter(okura_services(compose).values())))
    # PostgreSQL: the URL's user, password, host and database.
    url = httpx.URL(env["OKURA_DATABASE_URL"])
    postgres = services[url.host]["environment"]
    assert (url.username, url.password, url.path.strip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    # SeaweedFS: its S3 port and the credentials it knows; the bucket is created.
    endpoint = httpx.URL(env["OKURA_STORAGE_S3_ENDPOINT_URL"])
    weed = services[endpoint.host]
    assert f"-s3.port={endpoint.port}" in weed["command"]
    s3_config = next(v.split(":")[0] for v in weed["volumes"] if v.split(":")[1].endswith("s3.json"))
    identities = json.loads((DEPLOY / s3_config).read_text())["identities"]
    credentials = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}
    assert (env["OKURA_STORAGE_S3_ACCESS_KEY"], env["OKURA_STORAGE_S3_SECRET_KEY"]) in credentials
    bucket = " ".join(services["bucket"]["command"])
    assert f"s3.bucket.create -name {env['OKURA_STORAGE_S3_BUCKET']}" in bucket
    # Every file mounted from the repository exists.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"compose {name}: {source} does not exist"


def test_compose_proxy_streams_to_every_replica(compose):
    proxy = compose["services"]["proxy"]
    assert "5000:5000" in proxy["ports"]
    (conf,) = [v.split(":")[0] for v in proxy["volumes"] if "nginx.conf" in v]
    text = (DEPLOY / conf).read_text()
    for directive in ("client_max_body_size 0;", "proxy_request_buffering off;", "proxy_buffering off;"):
        assert directive in text, f"{conf}: {directive} is missing (pushes and pulls must stream)"
    upstreams = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", text, re.M))
    replicas = {f"{n}:5000" for n, s in okura_services(compose).items() if s.get("command") == ["serve"]}
    assert upstreams == replicas
    assert set(proxy["depends_on"]) == {u.split(":")[0] for u in upstreams}
