"""Configuration: defaults, YAML, OKURA_* environment overrides and error messages."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from registry.config import (
    ByteSize,
    Config,
    ConfigError,
    Duration,
    config_from_dict,
    load_config,
    parse_duration,
    parse_size,
    unknown_env_keys,
)


def write_yaml(tmp_path, text: str) -> str:
    path = tmp_path / "okura.yaml"
    path.write_text(text)
    return str(path)


# -- defaults ---------------------------------------------------------------------------------


def test_defaults():
    cfg = load_config(environ={})
    assert cfg.data_dir == "./data"
    assert cfg.http.addr == "0.0.0.0:5000"
    assert cfg.listen == ("0.0.0.0", 5000)
    assert cfg.http.workers == 1
    assert cfg.log.level == "info"
    assert cfg.log.format == "logfmt"
    assert cfg.storage.driver == "filesystem"
    assert cfg.storage_root == os.path.join("./data", "blobs")
    assert cfg.database_url == f"sqlite:///{os.path.join('./data', 'okura.db')}"
    assert cfg.uploads.purge_enabled is True
    assert cfg.uploads.purge_age == 7 * 86400
    assert cfg.uploads.purge_interval == 3600
    assert cfg.uploads.chunk_buffer == 4 << 20
    assert cfg.manifests.max_size == 4 << 20
    assert cfg.cache.max_bytes == 64 << 20


def test_load_config_does_not_leak_between_calls():
    first = load_config(environ={"OKURA_HTTP_WORKERS": "3"})
    second = load_config(environ={})
    assert first.http.workers == 3
    assert second.http.workers == 1
    assert Config().http.workers == 1


def test_derived_paths_follow_data_dir():
    cfg = load_config(environ={"OKURA_DATA_DIR": "/srv/okura"})
    assert cfg.storage_root == "/srv/okura/blobs"
    assert cfg.database_url == "sqlite:////srv/okura/okura.db"


def test_to_dict_round_trips():
    cfg = load_config(environ={"OKURA_UPLOADS_PURGE_AGE": "2h", "OKURA_HTTP_ADDR": "127.0.0.1:6000"})
    again = config_from_dict(cfg.to_dict())
    assert again == cfg


# -- YAML -------------------------------------------------------------------------------------


def test_yaml_file(tmp_path):
    path = write_yaml(
        tmp_path,
        """
data_dir: /var/lib/okura
http:
  addr: 127.0.0.1:5001
  workers: 4
log:
  level: debug
  format: json
storage:
  filesystem:
    root: /mnt/blobs
database:
  url: postgresql://okura@db/okura
uploads:
  purge_age: 15m
  purge_interval: 30s
  chunk_buffer: 8MiB
manifests:
  max_size: 1MB
""",
    )
    cfg = load_config(path, environ={})
    assert cfg.data_dir == "/var/lib/okura"
    assert cfg.listen == ("127.0.0.1", 5001)
    assert cfg.http.workers == 4
    assert cfg.log.level == "debug"
    assert cfg.log.format == "json"
    assert cfg.storage_root == "/mnt/blobs"
    assert cfg.database_url == "postgresql://okura@db/okura"
    assert cfg.uploads.purge_age == 900
    assert cfg.uploads.purge_interval == 30
    assert cfg.uploads.chunk_buffer == 8 * 1024 * 1024
    assert cfg.manifests.max_size == 1_000_000


def test_empty_yaml_file(tmp_path):
    assert load_config(write_yaml(tmp_path, ""), environ={}) == load_config(environ={})


def test_empty_section_in_yaml(tmp_path):
    cfg = load_config(write_yaml(tmp_path, "http:\nlog:\n"), environ={})
    assert cfg.http.addr == "0.0.0.0:5000"


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_config(str(tmp_path / "nope.yaml"), environ={})


def test_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write_yaml(tmp_path, "http: [unclosed\n"), environ={})


def test_yaml_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write_yaml(tmp_path, "- a\n- b\n"), environ={})


def test_yaml_section_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match=rf"^http{SRC}: expected a mapping"):
        load_config(write_yaml(tmp_path, "http: 5000\n"), environ={})


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write_yaml(tmp_path, "htttp:\n  addr: x\n"), environ={})
    message = str(e.value)
    assert re.match(rf"htttp \({re.escape(str(tmp_path))}/.*\): unknown key", message), message
    assert "http" in message  # lists the known keys


def test_unknown_nested_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write_yaml(tmp_path, "uploads:\n  purge_agee: 1h\n"), environ={})
    message = str(e.value)
    assert re.match(rf"uploads\.purge_agee{SRC}: unknown key", message), message
    assert "purge_age" in message


def test_unknown_key_via_overrides():
    with pytest.raises(ConfigError, match=rf"^storage\.gcs{SRC}: unknown key"):
        load_config(environ={}, overrides={"storage": {"gcs": {"bucket": "x"}}})


# -- environment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "check"),
    [
        ("OKURA_HTTP_ADDR", "127.0.0.1:5123", lambda c: c.listen == ("127.0.0.1", 5123)),
        ("OKURA_HTTP_ADDR", "[::1]:5123", lambda c: c.listen == ("::1", 5123)),
        ("OKURA_HTTP_WORKERS", "8", lambda c: c.http.workers == 8),
        ("OKURA_HTTP_BASE_URL", "https://r.example", lambda c: c.http.base_url == "https://r.example"),
        ("OKURA_HTTP_PUBLIC_URL", "https://r.apps:8443/", lambda c: c.http.public_host == "r.apps:8443"),
        ("OKURA_DATABASE_URL", "postgresql://u@h/db", lambda c: c.database_url == "postgresql://u@h/db"),
        ("OKURA_DATABASE_URL", "sqlite:////tmp/x.db", lambda c: c.database_url == "sqlite:////tmp/x.db"),
        ("OKURA_DATABASE_POOL_SIZE", "3", lambda c: c.database.pool_size == 3),
        ("OKURA_STORAGE_DRIVER", "filesystem", lambda c: c.storage.driver == "filesystem"),
        ("OKURA_STORAGE_FILESYSTEM_ROOT", "/mnt/b", lambda c: c.storage_root == "/mnt/b"),
        ("OKURA_STORAGE_DELETE_ENABLED", "false", lambda c: c.storage.delete_enabled is False),
        ("OKURA_LOG_LEVEL", "warning", lambda c: c.log.level == "warning"),
        ("OKURA_LOG_LEVEL", "ERROR", lambda c: c.log.level == "ERROR"),
        ("OKURA_LOG_ACCESS_LOG", "no", lambda c: c.log.access_log is False),
        ("OKURA_UPLOADS_PURGE_AGE", "1s", lambda c: c.uploads.purge_age == 1),
        ("OKURA_UPLOADS_PURGE_AGE", "90", lambda c: c.uploads.purge_age == 90),
        ("OKURA_UPLOADS_PURGE_AGE", "168h", lambda c: c.uploads.purge_age == 168 * 3600),
        ("OKURA_UPLOADS_PURGE_INTERVAL", "500ms", lambda c: c.uploads.purge_interval == 0.5),
        ("OKURA_UPLOADS_PURGE_ENABLED", "off", lambda c: c.uploads.purge_enabled is False),
        ("OKURA_UPLOADS_CHUNK_BUFFER", "1MiB", lambda c: c.uploads.chunk_buffer == 1 << 20),
        ("OKURA_MANIFESTS_MAX_SIZE", "64KiB", lambda c: c.manifests.max_size == 65536),
        ("OKURA_CACHE_MAX_BYTES", "0", lambda c: c.cache.max_bytes == 0),
        ("OKURA_PAGINATION_TAGS_MAX_ENTRIES", "50", lambda c: c.pagination.tags_max_entries == 50),
        ("OKURA_DATA_DIR", "/d", lambda c: c.data_dir == "/d"),
    ],
)
def test_environment_override(name, value, check):
    cfg = load_config(environ={name: value})
    assert check(cfg), (name, value)


def test_environment_beats_yaml_and_flags_beat_environment(tmp_path):
    path = write_yaml(tmp_path, "http:\n  addr: 127.0.0.1:1111\n  workers: 2\nlog:\n  level: debug\n")
    cfg = load_config(path, environ={"OKURA_HTTP_ADDR": "127.0.0.1:2222", "OKURA_HTTP_WORKERS": "5"})
    assert cfg.http.addr == "127.0.0.1:2222"
    assert cfg.http.workers == 5
    assert cfg.log.level == "debug"  # untouched by the environment
    cfg = load_config(path, environ={"OKURA_HTTP_ADDR": "127.0.0.1:2222"}, overrides={"http": {"addr": "1.2.3.4:3"}})
    assert cfg.http.addr == "1.2.3.4:3"
    assert cfg.http.workers == 2


def test_environment_is_read_from_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("OKURA_UPLOADS_PURGE_AGE", "2m")
    assert load_config().uploads.purge_age == 120


def test_unrelated_environment_is_ignored():
    cfg = load_config(environ={"HTTP_ADDR": "x", "OKURA": "y", "OKURAHTTP_ADDR": "z"})
    assert cfg == load_config(environ={})


def test_unknown_environment_keys():
    env = {
        "OKURA_HTTP_ADDR": "x",
        "OKURA_UPLOADS_PURGE_AGE": "1s",
        "OKURA_UPLOADS_PURGE_AGES": "1s",
        "OKURA_HTTP": "x",
        "OKURA_STORAGE_FILESYSTEM": "x",
        "OKURA_CONFIG": "/etc/okura.yaml",
        "OKURA_CONFIG_JSON": "{}",
        "PATH": "/bin",
    }
    assert unknown_env_keys(env) == ["OKURA_HTTP", "OKURA_STORAGE_FILESYSTEM", "OKURA_UPLOADS_PURGE_AGES"]


# -- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90),
        (1.5, 1.5),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("168h", 168 * 3600),
        ("7d", 7 * 86400),
        ("250ms", 0.25),
        ("1.5h", 5400),
        (" 2 m ", 120),
        ("0", 0),
    ],
)
def test_durations(text, seconds):
    value = parse_duration(text)
    assert isinstance(value, Duration)
    assert value == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "1 h 2", "h", "-5s", "1e3", "10 minutes", True])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (4194304, 4194304),
        ("4194304", 4194304),
        ("4MiB", 4 << 20),
        ("4mib", 4 << 20),
        ("4Mi", 4 << 20),
        ("64MB", 64_000_000),
        ("64M", 64_000_000),
        ("1KiB", 1024),
        ("1kb", 1000),
        ("2GiB", 2 << 30),
        ("1TB", 10**12),
        ("512B", 512),
        (" 8 MiB ", 8 << 20),
    ],
)
def test_sizes(text, size):
    value = parse_size(text)
    assert isinstance(value, ByteSize)
    assert value == size


@pytest.mark.parametrize("text", ["", "MiB", "4.5MiB", "-1", "4 XiB", "4MiBB", "lots", False])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


SRC = r"(?: \([^)]*\))?"  # where the value came from: file, environment variable or flag


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"OKURA_HTTP_WORKERS": "many"}, "http.workers"),
        ({"OKURA_HTTP_WORKERS": "0"}, "http.workers"),
        ({"OKURA_HTTP_ADDR": "localhost"}, "http.addr"),
        ({"OKURA_HTTP_ADDR": "localhost:99999"}, "http.addr"),
        ({"OKURA_HTTP_ADDR": "localhost:http"}, "http.addr"),
        ({"OKURA_UPLOADS_PURGE_AGE": "soon"}, "uploads.purge_age"),
        ({"OKURA_UPLOADS_PURGE_INTERVAL": "-1s"}, "uploads.purge_interval"),
        ({"OKURA_UPLOADS_CHUNK_BUFFER": "lots"}, "uploads.chunk_buffer"),
        ({"OKURA_UPLOADS_CHUNK_BUFFER": "1KiB"}, "uploads.chunk_buffer"),
        ({"OKURA_UPLOADS_PURGE_ENABLED": "maybe"}, "uploads.purge_enabled"),
        ({"OKURA_MANIFESTS_MAX_SIZE": "100"}, "manifests.max_size"),
        ({"OKURA_STORAGE_DRIVER": "s4"}, "storage.driver"),
        ({"OKURA_LOG_LEVEL": "loud"}, "log.level"),
        ({"OKURA_LOG_FORMAT": "xml"}, "log.format"),
        ({"OKURA_DATABASE_URL": "mysql://db/okura"}, "database.url"),
    ],
)
def test_bad_values_name_the_key(env, where):
    with pytest.raises(ConfigError) as e:
        load_config(environ=env)
    message = str(e.value)
    env_var = next(iter(env))
    assert message.startswith(f"{where} ({env_var}): "), message  # the key and where its value came from
    assert len(message) > len(where) + len(env_var) + 8  # says why, not only where
    assert "invalid literal" not in message and "Traceback" not in message


def test_bad_value_in_yaml_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=rf"^uploads\.purge_age{SRC}: 'tomorrow' is not a duration"):
        load_config(write_yaml(tmp_path, "uploads:\n  purge_age: tomorrow\n"), environ={})
    with pytest.raises(ConfigError, match=rf"^http\.workers{SRC}: "):
        load_config(write_yaml(tmp_path, "http:\n  workers: [1, 2]\n"), environ={})
    with pytest.raises(ConfigError, match=rf"^http\.workers{SRC}: "):
        load_config(write_yaml(tmp_path, "http:\n  workers: true\n"), environ={})
    with pytest.raises(ConfigError, match=rf"^data_dir{SRC}: "):
        load_config(write_yaml(tmp_path, "data_dir:\n  nested: 1\n"), environ={})


@pytest.mark.parametrize(
    ("yaml_text", "where"),
    [
        ("uploads:\n  purge_interval: -1\n", "uploads.purge_interval"),
        ("uploads:\n  purge_age: -60\n", "uploads.purge_age"),
        ("cache:\n  max_bytes: -1\n", "cache.max_bytes"),
    ],
    ids=["purge_interval", "purge_age", "max_bytes"],
)
def test_negative_numbers_are_rejected(tmp_path, yaml_text, where):
    """A YAML number bypasses the string syntax (which has no minus sign): a negative purge
    interval would make the purge task spin without sleeping."""
    with pytest.raises(ConfigError, match=rf"^{where}{SRC}:"):
        load_config(write_yaml(tmp_path, yaml_text), environ={})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write_yaml(tmp_path, "http:\n  workers: many\n  addr: nowhere\nuploads:\n  purge_age: soon\nbogus: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, environ={"OKURA_LOG_LEVEL": "loud", "OKURA_CACHE_MAX_BYTES": "lots"})
    problems = e.value.problems
    keys = sorted(p.split(" ")[0].rstrip(":") for p in problems)
    assert keys == ["bogus", "cache.max_bytes", "http.addr", "http.workers", "log.level", "uploads.purge_age"], problems
    assert f"http.workers ({path}): 'many' is not an integer" in problems
    assert any(p.startswith("log.level (OKURA_LOG_LEVEL): ") for p in problems)
    assert not any("invalid literal" in p for p in problems)


def test_flags_beat_the_environment_and_are_named(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(environ={"OKURA_HTTP_WORKERS": "2"}, overrides={"http": {"workers": 0}})
    assert e.value.problems == ["http.workers (command line): must be at least 1, not 0"]


@pytest.mark.parametrize("url", ["postgres://u:p@db/okura", "postgresql://db/okura", "sqlite:////tmp/x.db"])
def test_database_url_schemes(url):
    assert load_config(environ={"OKURA_DATABASE_URL": url}).database_url == url


def _leaves(obj, prefix=""):
    from dataclasses import fields, is_dataclass

    for f in fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        if is_dataclass(value):
            yield from _leaves(value, key + ".")
        else:
            yield key, value


def test_config_example_documents_every_key_with_its_default():
    import yaml

    from registry.config import Config

    path = Path(__file__).resolve().parents[2] / "config.example.yaml"
    loaded = load_config(str(path), environ={})
    documented = yaml.safe_load(path.read_text())
    defaults = Config()
    for key, default in _leaves(defaults):
        node = documented
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"config.example.yaml does not document {key}"
            node = node[part]
        value = loaded
        for part in key.split("."):
            value = getattr(value, part)
        assert value == default, f"config.example.yaml gives {key} as {value!r}, the default is {default!r}"


@pytest.mark.parametrize("url", ["registry.example", "ftp://r.example", "https://", "//r.example"])
def test_public_url_must_be_an_http_url(url):
    with pytest.raises(ConfigError, match=r"http\.public_url"):
        load_config(environ={"OKURA_HTTP_PUBLIC_URL": url})


def test_no_public_url_no_public_host():
    assert load_config(environ={}).http.public_host == ""
