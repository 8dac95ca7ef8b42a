"""notifications.endpoints in the config: distribution's keys, every problem named by item and
field, and a server that refuses to start on a bad endpoint, saying which."""

from __future__ import annotations

import subprocess

import pytest

from registry.config import ConfigError, load_config
from tests.support.processes import okura_command, okura_env

ENV = "OKURA_NOTIFICATIONS_ENDPOINTS"


def endpoints(text: str):
    return load_config(environ={ENV: text}).notifications.endpoints


def test_distribution_keys_are_understood():
    [ep] = endpoints(
        '[{name: ci, url: "https://ci/hook", headers: {Authorization: [Bearer x, Bearer y]}, timeout: 2s,'
        " backoff: 500ms, max_backoff: 10s, ignoredmediatypes: [a/b], ignore: {mediatypes: [c/d], actions: [pull]},"
        " format: cloudevents, secret: k, pulls: true}]"
    )
    assert ep.headers == (("Authorization", "Bearer x"), ("Authorization", "Bearer y"))
    assert (ep.timeout, ep.backoff, ep.max_backoff) == (2.0, 0.5, 10.0)
    assert ep.ignore_media_types == ("a/b", "c/d") and ep.ignore_actions == ("pull",)
    assert (ep.format, ep.secret, ep.pulls) == ("cloudevents", "k", True)


@pytest.mark.parametrize(
    "text, message",
    [
        ('[{name: ci, url: "ftp://x"}]', "[0].url: 'ftp://x' is not an http:// or https:// URL"),
        ('[{name: ci, url: "http://"}]', "[0].url"),
        ('[{name: Bad_Name, url: "http://x"}]', "[0].name"),
        ('[{name: a, url: "http://x"}, {name: a, url: "http://y"}]', "two endpoints are named 'a'"),
        ('[{name: a, url: "http://x", ignore: {actions: [fetch]}}]', "[0].ignore.actions"),
        ('[{name: a, url: "http://x", format: xml}]', "[0].format"),
        ('[{name: a, url: "http://x", timeout: soon}]', "[0]:"),
        ('[{name: a, url: "http://x", colour: red}]', "[0].colour: unknown key"),
        ("{name: a}", "must be a list"),
    ],
)
def test_bad_endpoints_are_named(text, message):
    with pytest.raises(ConfigError) as info:
        endpoints(text)
    assert "notifications.endpoints" in str(info.value) and message in str(info.value)


def test_the_server_refuses_to_start_on_a_bad_endpoint(tmp_path):
    argv = [*okura_command(), "serve", "--data-dir", str(tmp_path), "--addr", "127.0.0.1:0"]
    env = okura_env(**{ENV: '[{name: ci, url: "not a url"}]'})
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert "notifications.endpoints" in result.stderr and "[0].url" in result.stderr
    assert "Traceback" not in result.stderr
