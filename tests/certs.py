"""Certificates for TLS tests, made by trustme in a temp folder (no network, no fixed files).

One CA signs the server certificate (for 127.0.0.1 and localhost) and a client
certificate; the server's key is also written encrypted, and a second key that
belongs to another certificate stands in for a mix-up.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization

PASSWORD = "correct horse"


@dataclass(frozen=True)
class Certs:
    folder: Path
    ca: trustme.CA
    cert: Path  # server certificate chain
    key: Path
    encrypted_key: Path  # the same key, encrypted with PASSWORD
    other_key: Path  # the key of another certificate
    ca_pem: Path
    client: trustme.LeafCert  # signed by the same CA, for mutual TLS

    def client_context(self, *, with_client_cert: bool = False, alpn: list[str] | None = None) -> ssl.SSLContext:
        """A client that trusts the test CA (and presents a client certificate if asked)."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        if with_client_cert:
            self.client.configure_cert(context)
        if alpn:
            context.set_alpn_protocols(alpn)
        return context


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    other = ca.issue_cert("other.example")
    client = ca.issue_cert("client@example.com")
    cert = folder / "server.pem"
    cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    key = folder / "server.key"
    key.write_bytes(server.private_key_pem.bytes())
    private = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    encrypted_key = folder / "server-encrypted.key"
    encrypted_key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    other_key = folder / "other.key"
    other_key.write_bytes(other.private_key_pem.bytes())
    ca_pem = folder / "ca.pem"
    ca_pem.write_bytes(ca.cert_pem.bytes())
    return Certs(folder, ca, cert, key, encrypted_key, other_key, ca_pem, client)
