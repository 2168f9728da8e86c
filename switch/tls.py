"""TLS for acquirer listeners and issuer links: stdlib ``ssl`` contexts, and a test PKI.

Both contexts refuse anything below TLS 1.2 and use the stdlib's default
(secure) cipher choice. A listener with ``tls_client_ca`` *requires* a client
certificate issued by that CA; an issuer link verifies the issuer's
certificate against ``tls_ca`` and its host name (or IP address) against the
endpoint's host. The listener's streams come from ``trio.SSLListener``; a
client (an issuer link, ``switch send``/``replay``) connects with
:func:`open_stream`, which completes the handshake before it returns. A peer
that does not complete the handshake (a plaintext client, a bad
certificate) breaks only its own stream. :func:`naming_files` turns ssl's
file errors, which name no file, into ConfigErrors that do.

:func:`make_test_pki` writes a throw-away CA, a server certificate for
``localhost``/``127.0.0.1`` and a client certificate, with ``cryptography``
(tests and the README's example). Private key files are 0600.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from switch.errors import ConfigError

__all__ = ["client_context", "make_test_pki", "naming_files", "open_stream", "server_context"]

_MINIMUM = ssl.TLSVersion.TLSv1_2


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    """A listener's context; with ``client_ca``, a client certificate from it is required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _MINIMUM
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """An issuer link's context: verifies the server against ``ca`` (None: system CAs)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    context.minimum_version = _MINIMUM
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


@contextlib.contextmanager
def naming_files(who: str, files: Mapping[str, Path | None]) -> Iterator[None]:
    """ssl's errors name no file ('[Errno 2] No such file or directory'): name them.

    Around building a context for ``who`` (a listener, issuer link, simulator or
    command) from ``files`` (its config key or option -> path, None when not
    set): an error loading them becomes a ConfigError naming each and its path.
    """
    try:
        yield
    except (OSError, ssl.SSLError) as exc:
        named = " and ".join(f"{key} {path}" for key, path in files.items() if path is not None)
        raise ConfigError(f"{who}: cannot load {named}: {exc.strerror or exc}") from None


async def open_stream(host: str, port: int, context: ssl.SSLContext) -> trio.SSLStream[Any]:
    """A TCP connection to ``host:port`` with its TLS handshake done.

    trio handshakes lazily, on the first send or read: without this, a
    certificate that does not verify would show only later, as a link that
    looked up or a client that never heard an answer. A refused handshake
    raises trio.BrokenResourceError (``errors.reason_of`` says why); on any
    failure, a cancel included, no socket is left open.
    """
    stream = await trio.open_ssl_over_tcp_stream(
        host, port, ssl_context=context, https_compatible=False
    )
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
    now: dt.datetime,
) -> x509.Certificate:
    issuer_name, signer = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=usage is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if usage is None:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_test_pki(folder: Path, *, name: str = "switch test") -> dict[str, Path]:
    """Write a CA, a server and a client certificate with their keys; return their paths.

    Keys: ``ca_cert``, ``ca_key``, ``server_cert``, ``server_key``,
    ``client_cert``, ``client_key``. Each call makes a new, unrelated CA.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue(f"{name} CA", ca_key, None, now=now)
    paths = {"ca_cert": folder / "ca.pem", "ca_key": folder / "ca.key"}
    paths["ca_cert"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths["ca_key"], ca_key)
    for role, usage in (
        ("server", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"{name} {role}", key, (ca_cert.subject, ca_key), usage=usage, now=now)
        paths[f"{role}_cert"] = folder / f"{role}.pem"
        paths[f"{role}_key"] = folder / f"{role}.key"
        paths[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(paths[f"{role}_key"], key)
    return paths
