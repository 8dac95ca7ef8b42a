"""The ImagePruner resource's pure parts: Go durations, spec validation, merge patches,
conditions and the run summary line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml

from registry.config import PrunerConfig
from registry.pruning import resource as r
from registry.pruning import spec as s
from registry.pruning.spec import Invalid
from registry.units import format_go_duration, parse_duration_ns
from tests.support.pruner import SEED_YAML


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("60m", 3600 * 10**9),
        ("1h30m", 5400 * 10**9),
        ("90s", 90 * 10**9),
        ("0s", 0),
        ("0", 0),
        ("1.5h", 5400 * 10**9),
        ("300ms", 300 * 10**6),
        ("2us", 2000),
        ("2\u00b5s", 2000),
        ("1h0m0s", 3600 * 10**9),
        # One grammar everywhere: days and plain seconds too, spaces ignored.
        ("2d", 2 * 86400 * 10**9),
        ("1d12h", 36 * 3600 * 10**9),
        ("60", 60 * 10**9),
        ("5 m", 300 * 10**9),
    ],
)
def test_go_durations_parse(text, ns):
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize("text", ["", "-5m", "h", "1.h2", "abc", "1h-5m", "1e3", "5x", True, None])
def test_bad_go_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_duration_ns(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (3600 * 10**9, "1h0m0s"),
        (90 * 10**9, "1m30s"),
        (5400 * 10**9, "1h30m0s"),
        (1500 * 10**6, "1.5s"),
        (300 * 10**6, "300ms"),
        (1500, "1.5\u00b5s"),
        (7, "7ns"),
        (25 * 3600 * 10**9, "25h0m0s"),
    ],
)
def test_go_durations_format_as_go_does(ns, text):
    assert format_go_duration(ns) == text
    assert parse_duration_ns(text) == ns


def test_defaults_fill_an_empty_spec():
    assert s.normalize_spec({}) == {
        "schedule": "0 0 * * *",
        "suspend": False,
        "keepTagRevisions": 3,
        "keepYoungerThanDuration": "1h0m0s",
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "ignoreInvalidImageReferences": False,
        "pruneRegistry": True,
        "logLevel": "Normal",
    }
    assert s.normalize_spec(None) == s.normalize_spec({"schedule": "", "suspend": None})


def test_deprecated_keep_younger_than_counts_only_without_the_duration():
    only_ns = s.normalize_spec({"keepYoungerThan": 2 * 3600 * 10**9})
    assert "keepYoungerThanDuration" not in only_ns
    assert s.keep_younger_than_seconds(only_ns) == 7200
    both = s.normalize_spec({"keepYoungerThan": 2 * 3600 * 10**9, "keepYoungerThanDuration": "90s"})
    assert both["keepYoungerThan"] == 7200 * 10**9
    assert s.keep_younger_than_seconds(both) == 90


def test_initial_spec_comes_from_the_config():
    cfg = PrunerConfig(schedule="30 2 * * *", suspend=True, keep_tag_revisions=5, keep_younger_than=5400)
    spec = s.initial_spec(cfg)
    assert spec["schedule"] == "30 2 * * *"
    assert spec["suspend"] is True
    assert spec["keepTagRevisions"] == 5
    assert spec["keepYoungerThanDuration"] == "1h30m0s"
    assert spec["ignoreInvalidImageReferences"] is True  # OpenShift's bootstrap value
    options = s.prune_options(spec, grace_period=120, confirm=True)
    assert (options.keep_tag_revisions, options.keep_younger_than, options.grace_period) == (5, 5400, 120)
    assert options.confirm and options.prune_registry and options.ignore_invalid_refs


def test_the_openshift_example_is_accepted_and_placement_kept():
    spec = s.spec_from_object(yaml.safe_load(SEED_YAML))
    assert spec["schedule"] == "0 0 * * *"
    assert spec["keepYoungerThanDuration"] == "1h0m0s"
    assert spec["resources"] == {} and spec["affinity"] == {} and spec["tolerations"] == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"schedule": "every day"}, "spec.schedule"),
        ({"schedule": "0 0 * * * *"}, "spec.schedule"),  # seconds field: not a Kubernetes schedule
        ({"schedule": "61 * * * *"}, "spec.schedule"),
        ({"schedule": "0 0 31 2 *"}, "spec.schedule"),  # never fires
        ({"schedule": "@every 1h"}, "spec.schedule"),
        ({"schedule": 5}, "spec.schedule"),
        ({"keepTagRevisions": -1}, "spec.keepTagRevisions"),
        ({"keepTagRevisions": "3"}, "spec.keepTagRevisions"),
        ({"keepTagRevisions": True}, "spec.keepTagRevisions"),
        ({"keepTagRevisions": 2.5}, "spec.keepTagRevisions"),
        ({"successfulJobsHistoryLimit": -2}, "spec.successfulJobsHistoryLimit"),
        ({"failedJobsHistoryLimit": "x"}, "spec.failedJobsHistoryLimit"),
        ({"keepYoungerThanDuration": "1w"}, "spec.keepYoungerThanDuration"),
        ({"keepYoungerThanDuration": "-1h"}, "spec.keepYoungerThanDuration"),
        ({"keepYoungerThanDuration": 3600}, "spec.keepYoungerThanDuration"),
        ({"keepYoungerThan": -5}, "spec.keepYoungerThan"),
        ({"keepYoungerThan": "1h"}, "spec.keepYoungerThan"),
        ({"suspend": "yes"}, "spec.suspend"),
        ({"pruneRegistry": 1}, "spec.pruneRegistry"),
        ({"ignoreInvalidImageReferences": "true"}, "spec.ignoreInvalidImageReferences"),
        ({"logLevel": "Verbose"}, "spec.logLevel"),
        ({"resources": []}, "spec.resources"),
        ({"tolerations": {}}, "spec.tolerations"),
        ({"tolerations": ["x"]}, "spec.tolerations[0]"),
        ({"nodeSelector": {"a": 1}}, "spec.nodeSelector.a"),
        ({"keepTagRevision": 3}, "spec.keepTagRevision"),
    ],
)
def test_invalid_specs_name_the_field(spec, field):
    with pytest.raises(Invalid) as info:
        s.normalize_spec(spec)
    assert info.value.status == 422
    assert info.value.message.startswith(field + ":"), info.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"apiVersion": "v1", "spec": {}}, "apiVersion"),
        ({"kind": "CronJob", "spec": {}}, "kind"),
        ({"metadata": {"name": "other"}, "spec": {}}, "metadata.name"),
        ({"spec": {}, "extra": 1}, "extra"),
        ({"spec": []}, "spec"),
    ],
)
def test_invalid_objects_name_the_field(body, field):
    with pytest.raises(Invalid) as info:
        s.spec_from_object(body)
    assert info.value.message.startswith(field + ":"), info.value.message


def test_merge_patch_follows_rfc_7386():
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None, "h": 1}, "l": [3], "n": None}
    assert s.merge_patch(target, patch) == {"a": "z", "c": {"d": "e", "h": 1}, "l": [3]}
    assert target["c"] == {"d": "e", "f": "g"}  # not modified


def test_conditions_keep_transition_times_until_a_status_flips():
    spec = s.normalize_spec({})
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    first = r.conditions(spec, None, [], t0)
    assert [(c["type"], c["status"], c["reason"]) for c in first] == [
        ("Available", "True", "AsExpected"),
        ("Scheduled", "True", "Scheduled"),
        ("Failed", "False", "Complete"),
    ]
    t1 = t0 + timedelta(hours=1)
    failed_run = {"outcome": "failed", "reason": "PruneFailed", "message": "storage exploded"}
    second = r.conditions({**spec, "suspend": True}, failed_run, first, t1)
    by_type = {c["type"]: c for c in second}
    assert by_type["Available"]["lastTransitionTime"] == "2030-01-01T00:00:00Z"
    assert by_type["Scheduled"] == {
        "type": "Scheduled",
        "status": "False",
        "reason": "Suspended",
        "message": "The pruner job has been suspended",
        "lastTransitionTime": "2030-01-01T01:00:00Z",
    }
    assert by_type["Failed"]["status"] == "True"
    assert by_type["Failed"]["message"] == "storage exploded"
    assert by_type["Failed"]["lastTransitionTime"] == "2030-01-01T01:00:00Z"


def test_due_time_and_the_starting_deadline():
    spec = s.normalize_spec({"schedule": "0 * * * *"})
    created = datetime(2030, 1, 1, 12, 20, tzinfo=UTC)
    at = datetime(2030, 1, 1, 12, 59, tzinfo=UTC)
    assert r.due_time(spec, {}, created, at) == (None, False)
    at = datetime(2030, 1, 1, 13, 0, tzinfo=UTC)
    assert r.due_time(spec, {}, created, at) == (at, False)
    status = {"lastScheduleTime": "2030-01-01T13:00:00Z"}
    assert r.due_time(spec, status, created, at + timedelta(minutes=30)) == (None, False)
    due, late = r.due_time(spec, status, created, datetime(2030, 1, 1, 15, 30, tzinfo=UTC))
    assert due == datetime(2030, 1, 1, 15, 0, tzinfo=UTC) and not late  # the latest one only
    daily = s.normalize_spec({})
    due, late = r.due_time(daily, {}, created, datetime(2030, 1, 2, 1, 0, 1, tzinfo=UTC))
    assert due == datetime(2030, 1, 2, tzinfo=UTC) and late


def test_summary_lines():
    counts = {"tagRevisions": 4, "manifests": 3, "repositoryBlobs": 5, "blobs": 6, "bytesFreed": 12_897_485}
    assert r.summary(counts, dry_run=False) == (
        "Deleted 4 image stream tag item(s), 3 manifest(s), 5 repository blob link(s), 6 blob(s) (12.3 MiB)"
    )
    assert r.summary({**counts, "orphans": 2, "bytesFreed": 512}, dry_run=True) == (
        "Would delete 4 image stream tag item(s), 3 manifest(s), 5 repository blob link(s), 6 blob(s), "
        "2 orphaned storage file(s) (512 B)"
    )


def test_config_refuses_a_bad_schedule():
    from registry.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match=r"pruner\.schedule"):
        config_from_dict({"pruner": {"schedule": "not cron"}})
    with pytest.raises(ConfigError, match=r"pruner\.keep_tag_revisions"):
        config_from_dict({"pruner": {"keep_tag_revisions": -1}})


def test_every_invalid_field_is_reported_at_once():
    body = {
        "kind": "CronJob",
        "spec": {"schedule": "whenever", "keepTagRevisions": -1, "pruneRegistry": "yes", "bogus": 1},
    }
    with pytest.raises(Invalid) as info:
        s.spec_from_object(body)
    fields = sorted(c["field"] for c in info.value.details["causes"])
    assert fields == ["kind", "spec.bogus", "spec.keepTagRevisions", "spec.pruneRegistry", "spec.schedule"]
    for field in fields:
        assert field in info.value.message


def test_durations_with_days_are_accepted_and_stored_as_go_prints_them():
    assert s.normalize_spec({"keepYoungerThanDuration": "2d"})["keepYoungerThanDuration"] == "48h0m0s"
