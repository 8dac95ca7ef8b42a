# Okura: a small image running `okura serve` as a non-root user on port 5000.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage ./storage
COPY auth ./auth
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/okura --create-home okura
COPY --from=build /install /usr/local
COPY config.example.yaml /etc/okura/config.example.yaml
ENV OKURA_DATA_DIR=/var/lib/okura \
    PYTHONUNBUFFERED=1
USER okura
VOLUME ["/var/lib/okura"]
EXPOSE 5000
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["okura"]
CMD ["serve", "--addr", "0.0.0.0:5000"]
