"""`okura kubeconfig`: a kubeconfig for kubectl (or oc) pointed at this registry's API.

    okura kubeconfig [--server URL] [--token TOKEN | --user NAME] [-n NS] [--certificate-authority FILE]

The server is --server, else http.base_url, else the address a live server listens on (https
when http.tls is configured). Credentials: --token embeds an existing token (checked to be
valid now); --user mints a new token for that user or service account; neither embeds
$OKURA_TOKEN when it is set. kubectl sends credentials only over HTTPS: over plain HTTP it
would be anonymous, which the command warns about. The cluster's CA is --certificate-authority,
else the configured certificate's own chain when it ends in a self-signed certificate.
"""

from __future__ import annotations

import argparse
import base64
import os
import ssl
import sys
from typing import Any
from urllib.parse import urlsplit

import yaml

from registry.cli.common import CommandError, config_flags, run, warn
from registry.cli.get import registry_host
from registry.runtime import Runtime


def _pem_blocks(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [block.strip() + "\n" + end + "\n" for block in text.split(end) if "-----BEGIN CERTIFICATE-----" in block]


def _self_signed_root(certificate_file: str) -> bytes | None:
    """The last certificate of the server's chain when it is self-signed (a private CA or a
    self-signed server certificate): what a client must trust. None for a public chain."""
    from cryptography import x509

    try:
        with open(certificate_file) as f:
            blocks = _pem_blocks(f.read())
    except OSError as e:
        raise CommandError(f"cannot read http.tls.certificate {certificate_file}: {e.strerror}") from None
    if not blocks:
        return None
    last = x509.load_pem_x509_certificate(blocks[-1].encode())
    return blocks[-1].encode() if last.issuer == last.subject else None


def _read_ca(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CommandError(f"cannot read {path}: {e.strerror}") from None
    try:
        ssl.create_default_context(cadata=data.decode())
    except (ValueError, ssl.SSLError):
        raise CommandError(f"{path} holds no PEM certificate") from None
    return data


async def _server(runtime: Runtime, args: argparse.Namespace) -> str:
    if args.server:
        parts = urlsplit(args.server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CommandError(f"--server must be an http:// or https:// URL, not {args.server!r}", status=2)
        return args.server.rstrip("/")
    config = runtime.config
    if config.http.base_url:
        return config.http.base_url.rstrip("/")
    scheme = "https" if config.http.tls.certificate else "http"
    return f"{scheme}://{await registry_host(runtime)}"


async def _credentials(runtime: Runtime, args: argparse.Namespace) -> tuple[str, str | None]:
    """(user name, token) for the kubeconfig; no token: anonymous."""
    store = runtime.auth.store
    if args.user:
        if not await store.subject_exists(args.user):
            raise CommandError(f"no user or service account {args.user!r}")
        secret, info = await store.create_token(args.user, None, "kubeconfig")
        print(f"token {info.id} created for {info.subject}", file=sys.stderr)
        return info.subject, secret
    token = args.token or os.environ.get("OKURA_TOKEN") or None
    if token is None:
        return "anonymous", None
    valid = await store.valid_token(token)
    if valid is None:
        raise CommandError("the token is not valid (unknown, revoked or expired)")
    return valid.subject, token


async def _kubeconfig(runtime: Runtime, args: argparse.Namespace) -> int:
    server = await _server(runtime, args)
    user, token = await _credentials(runtime, args)
    cluster: dict[str, Any] = {"server": server}
    if args.insecure_skip_tls_verify:
        cluster["insecure-skip-tls-verify"] = True
    elif args.certificate_authority:
        cluster["certificate-authority-data"] = base64.b64encode(_read_ca(args.certificate_authority)).decode()
    elif server.startswith("https://") and runtime.config.http.tls.certificate:
        root = _self_signed_root(runtime.config.http.tls.certificate)
        if root is not None:
            cluster["certificate-authority-data"] = base64.b64encode(root).decode()
    if token and server.startswith("http://"):
        warn("kubectl sends credentials only over https: with this http:// server it will be anonymous")
    name = urlsplit(server).netloc.replace(":", "-")
    user_name = f"{user}/{name}"
    context: dict[str, Any] = {"cluster": name, "user": user_name}
    if args.namespace:
        context["namespace"] = args.namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": user_name, "user": {"token": token} if token else {}}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }
    sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "kubeconfig",
        help="print a kubeconfig for kubectl pointed at this registry",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    config_flags(p)
    p.add_argument("--server", help="the API URL (default: http.base_url, else the server's address)")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--token", help="an existing token to embed (default: $OKURA_TOKEN)")
    who.add_argument("--user", help="mint a new token for this user or service account NS/NAME")
    p.add_argument("-n", "--namespace", help="the context's default namespace")
    trust = p.add_mutually_exclusive_group()
    trust.add_argument("--certificate-authority", metavar="FILE", help="PEM CA file to embed")
    trust.add_argument("--insecure-skip-tls-verify", action="store_true", help="do not verify the server")
    p.set_defaults(func=lambda args: run(args, _kubeconfig), prog="okura kubeconfig")
