"""TLS for the listener: TLS 1.2 and later with forward-secret AEAD ciphers only, optional
client certificates (mutual TLS), and certificates that follow their files.

cert-manager and OpenShift's service CA replace certificate files in place. Each handshake
checks (at most once a second) whether the files changed and, if they did, loads them into a
new context that this and later handshakes use; connections already open keep theirs, so a
rotation drops nothing. Files caught mid-rotation (a new certificate, the old key) fail to
load: the previous context stays in use and the next check tries again.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from dataclasses import dataclass

from registry.config import ConfigError, TLSConfig

log = logging.getLogger("okura.tls")

# TLS 1.2 suites with forward secrecy and AEAD (TLS 1.3 suites are all of that already).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CHECK_INTERVAL = 1.0  # seconds between looks at the files


def _signature(paths: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def build_context(tls: TLSConfig) -> ssl.SSLContext:
    """A server context for the configured files; ConfigError naming the file that fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.set_alpn_protocols(["http/1.1"])
    _check_pem("http.tls.certificate", tls.certificate, "CERTIFICATE")
    _check_pem("http.tls.key", tls.key, "PRIVATE KEY")
    try:
        context.load_cert_chain(tls.certificate, tls.key)
    except (OSError, ssl.SSLError) as e:
        problem = f"cannot load {tls.certificate} with {tls.key}: {_why(e)}"
        raise ConfigError(f"http.tls.certificate/key: {problem}") from None
    if tls.client_ca:
        _check_pem("http.tls.client_ca", tls.client_ca, "CERTIFICATE")
        try:
            context.load_verify_locations(cafile=tls.client_ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"http.tls.client_ca: cannot load {tls.client_ca}: {_why(e)}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _check_pem(key: str, path: str, label: str) -> None:
    """The file reads and holds a PEM block of `label` (OpenSSL would only say "PEM lib")."""
    try:
        with open(path, "rb") as f:
            text = f.read(1 << 20)
    except OSError as e:
        raise ConfigError(f"{key}: cannot read {path}: {_why(e)}") from None
    if b"-----BEGIN " not in text or label.encode() not in text:
        what = "certificate" if label == "CERTIFICATE" else "private key"
        raise ConfigError(f"{key}: {path} holds no PEM {what}")


def _why(error: Exception) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    return error.strerror or str(error) if isinstance(error, OSError) else str(error)


@dataclass
class ReloadingContext:
    """The context the listener is created with; it hands each handshake the context of
    the files as they are now."""

    tls: TLSConfig
    context: ssl.SSLContext
    current: ssl.SSLContext
    signature: tuple[tuple[int, int, int], ...]
    checked_at: float = 0.0
    failed: tuple[tuple[int, int, int], ...] | None = None  # files seen not to load (warned once)

    @classmethod
    def create(cls, tls: TLSConfig) -> ReloadingContext:
        paths = cls.paths_of(tls)
        signature = _signature(paths)
        front = build_context(tls)
        holder = cls(tls, front, front, signature, time.monotonic())
        front.sni_callback = holder._on_hello
        return holder

    @staticmethod
    def paths_of(tls: TLSConfig) -> tuple[str, ...]:
        return tuple(p for p in (tls.certificate, tls.key, tls.client_ca) if p)

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self.checked_at < CHECK_INTERVAL:
            return
        self.checked_at = now
        signature = _signature(self.paths_of(self.tls))
        if signature == self.signature:
            return
        try:
            fresh = build_context(self.tls)
        except ConfigError as e:
            if signature != self.failed:  # once per state of the files, not once a second
                log.warning("TLS files changed but do not load yet, still serving the previous ones: %s", e)
                self.failed = signature
            return
        self.current, self.signature, self.failed = fresh, signature, None
        log.info("TLS certificate reloaded from %s", self.tls.certificate)

    def _on_hello(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        try:
            self.refresh()
            if self.current is not self.context:
                connection.context = self.current
        except Exception:  # an exception here would abort the handshake with no trace of why
            log.exception("TLS certificate reload failed")
