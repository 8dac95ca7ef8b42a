# Okura: `okura serve` on port 5000 as a non-root user.
#
# Runs under any UID with group 0 (OpenShift's restricted SCC assigns one at random): the
# data directory /var/lib/okura belongs to group 0 and is group-writable, HOME points at
# it, and nothing else is written at run time, so the root filesystem may be read-only
# (docker run --read-only, readOnlyRootFilesystem: true). With `http.workers` above 1 the
# metrics files go to /dev/shm (else $TMPDIR): mount an emptyDir at /tmp if /dev/shm is
# not writable. Settings: a config file mounted anywhere and named by OKURA_CONFIG, and
# OKURA_<SECTION>_<KEY> variables (OKURA_HTTP_ADDR, default 0.0.0.0:5000). The image sets
# OKURA_DATA_DIR, which beats a config file's data_dir.
# tests/e2e/test_deploy_manifests.py checks these properties and runs them without a build.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage ./storage
COPY auth ./auth
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
COPY config.example.yaml /etc/okura/config.example.yaml
COPY deploy/image/healthcheck.py /usr/local/lib/okura/healthcheck.py
RUN mkdir -p /var/lib/okura \
 && chown -R 10001:0 /var/lib/okura \
 && chmod -R g=u /var/lib/okura
ENV HOME=/var/lib/okura \
    OKURA_DATA_DIR=/var/lib/okura \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /var/lib/okura
USER 10001
VOLUME ["/var/lib/okura"]
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "/usr/local/lib/okura/healthcheck.py"]
ENTRYPOINT ["okura"]
CMD ["serve"]
