"""What the test suites share: servers and processes, ports, clients, fakes and builders.

A plain package (no fixtures, no hooks: those live in the conftest.py files, which import
from here). Nothing here imports a conftest module.

- auth: in-process auth clients (TokenDance, Accounts, login, basic, parse_challenge) and the `okura auth` CLI
- backends: the `backend` fixture's values (BACKENDS, SQL_BACKENDS)
- blobs: MiB and PatternBlob, a large blob generated as it streams
- clients: podman/buildah/skopeo with a private configuration (Clients), skipping when clients are missing
- clock: fake clocks (FakeClock in-process, MovableClock through OKURA_TEST_CLOCK_FILE)
- digests: sha256 of bytes and of files
- disks: Tmpfs, a small disk a test can fill
- docker: a private dockerd (Docker, start_dockerd)
- http: OCI distribution API helpers over httpx (push_blob, push_image, assert_error, ...)
- images: test images: random layers, buildah builds (build_image), OCI layouts written by hand
- logs: log files (tail) and logfmt lines (parse_logfmt)
- media_types: OCI and Docker media types
- ports: the one port allocator
- postgres: throwaway PostgreSQL databases
- processes: the okura command and its environment, background processes and process groups
- pruner: a stand-in for the prune function and OpenShift's ImagePruner example
- registries: end-to-end registries (Registry, AuthRegistry, start_registry) read through their access log
- rss: resident set size of a process, and a sampler
- s3: the session's shared SeaweedFS, started in the background
- seaweedfs: a throwaway SeaweedFS server (a real S3)
- servers: OkuraServer, a restartable `okura serve` process; Replicas, two of them on one database
- storages: where a registry under test keeps its blobs (STORAGES, BlobStore, stored_blobs)
"""
