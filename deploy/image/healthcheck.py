"""The container image's HEALTHCHECK (copied to /usr/local/lib/okura/healthcheck.py).

Asks this container's own server for /readyz (falling back to /healthz on a server that
has no /readyz) on the address `okura serve` listens on: the effective configuration,
read the way the server reads it (the OKURA_CONFIG file, then OKURA_* variables). With
http.tls set it speaks HTTPS without verifying the certificate (it checks the process,
not the name); with http.tls.client_ca it presents the server's own certificate, which
works when the client CA also signed it. Exit 0 when healthy, 1 otherwise (one line says
why).
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

from registry.config import ConfigError, load_config

TIMEOUT = 4.0
PATHS = ("/readyz", "/healthz")


def base_url() -> tuple[str, ssl.SSLContext | None]:
    config = load_config(os.environ.get("OKURA_CONFIG") or None)
    host, port = config.listen
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    tls = config.http.tls
    if not tls.certificate:
        return f"http://{host}:{port}", None
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls.client_ca:
        context.load_cert_chain(tls.certificate, tls.key)
    return f"https://{host}:{port}", context


def main() -> int:
    try:
        base, context = base_url()
    except (ConfigError, OSError, ssl.SSLError) as e:
        print(f"okura-healthcheck: {e}", file=sys.stderr)
        return 1
    for path in PATHS:
        try:
            with urllib.request.urlopen(base + path, timeout=TIMEOUT, context=context) as answer:
                return 0 if answer.status == 200 else 1
        except urllib.error.HTTPError as e:
            if e.code == 404 and path != PATHS[-1]:
                continue  # an older server without /readyz
            print(f"okura-healthcheck: {base}{path}: {e.code} {e.reason}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as e:
            print(f"okura-healthcheck: {base}{path}: {getattr(e, 'reason', e)}", file=sys.stderr)
            return 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
