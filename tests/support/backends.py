"""Where an in-process app under test keeps its metadata and blobs: the `backend` fixture's
values (tests/conftest.py)."""

# SQLite or PostgreSQL with the filesystem driver, or SQLite with the S3 driver on a real
# SeaweedFS (blobs streamed, no redirects).
BACKENDS = ("sqlite", "postgres", "s3")
# For tests where blob storage plays no part.
SQL_BACKENDS = ("sqlite", "postgres")
