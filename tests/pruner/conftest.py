"""Fixtures for the pruner tests: SQLite and PostgreSQL (blob storage plays no part in the
resource and the scheduling), a movable clock and an injectable prune function."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from registry.pruning.images import PruneOptions, PruneReport
from tests.auth.conftest import (  # noqa: F401 - fixtures shared with the auth tests
    cheap_password_hashes,
    connect,
)

START = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

# OpenShift's documented ImagePruner example, as printed by `oc get imagepruner cluster -o yaml`
# (status block, its "staus" typo and unquoted timestamps included: status is ignored).
SEED_YAML = """\
apiVersion: imageregistry.operator.openshift.io/v1
kind: ImagePruner
metadata:
  name: cluster
spec:
  schedule: 0 0 * * *
  suspend: false
  keepTagRevisions: 3
  keepYoungerThanDuration: 60m
  resources: {}
  affinity: {}
  nodeSelector: {}
  tolerations: []
  successfulJobsHistoryLimit: 3
  failedJobsHistoryLimit: 3
status:
  observedGeneration: 2
  conditions:
  - type: Available
    status: "True"
    lastTransitionTime: 2019-10-09T03:13:45
    reason: Ready
    message: "Periodic image pruner has been created."
  - type: Scheduled
    status: "True"
    lastTransitionTime: 2019-10-09T03:13:45
    reason: Scheduled
    message: "Image pruner job has been scheduled."
  - type: Failed
    staus: "False"
    lastTransitionTime: 2019-10-09T03:13:45
    reason: Succeeded
    message: "Most recent image pruning job succeeded."
"""


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


class FakeClock:
    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, when: datetime) -> datetime:
        self.now = when
        return when

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """The registry's clock, frozen at START until a test moves it."""
    fake = FakeClock(START)
    monkeypatch.setattr("registry.clock.now", fake)
    return fake


class FakePrune:
    """Stands in for registry.pruning.images.prune_images: records its calls, may fail or
    take a while, and reports fixed counts."""

    def __init__(self) -> None:
        self.calls: list[PruneOptions] = []
        self.fail: str | None = None
        self.delay = 0.0
        self.running = 0
        self.max_running = 0

    async def __call__(self, reg, options: PruneOptions) -> PruneReport:
        self.calls.append(options)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail:
                raise RuntimeError(self.fail)
            return PruneReport(
                dry_run=not options.confirm,
                started_at=START,
                tag_revisions=2,
                manifests=1,
                repository_blobs=3,
                blobs=4,
                bytes_freed=5 * 1024 * 1024,
                orphans=0,
                details=["would delete team/app:v1 revision sha256:aaaa", "would delete blob sha256:bbbb"],
            )
        finally:
            self.running -= 1


@pytest.fixture
def fake_prune() -> FakePrune:
    return FakePrune()
