"""Stand-ins for the image pruner tests: a prune function that records its calls, and
OpenShift's ImagePruner example."""

from __future__ import annotations

import asyncio

from registry.pruning.images import PruneOptions, PruneReport
from tests.support.clock import START

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
