"""TLS for each server qkhyper runs: checked in the parent, one meaning on both backends.

`[qkhyper]` (the apps), `[qkhyper.gateway]` and `[qkhyper.static]` each hold
`certfile`, `keyfile`, `keyfile_password` and `ca_certs` (model.TlsSettings).
Hypercorn's top-level keys of those names are refused (config/load.py), so a
setting is named once and means the same whichever server runs.

The parent loads the files with `ssl.SSLContext.load_cert_chain` when it plans
a start (`serve`, `gateway`, `static`, `check`): a missing file, a key that
does not match the certificate or a wrong password is one line and exit 2,
never a traceback in every worker. Each worker loads them again before it
imports its app (`check_files`), since a SIGHUP roll is how renewed files get
served. A worker gets the absolute paths in its ChildSpec and the password in
its environment (`PASSWORD_VAR`), because the ChildSpec travels in argv, where
`ps` shows it to every local user.

`ca_certs` means mutual TLS: a client must present a certificate signed by one
of those CAs. Both servers, given the file alone, load it and then never ask
for a client certificate (Hypercorn leaves `verify_mode` unset, which its
`create_default_context(CLIENT_AUTH)` makes CERT_NONE; uvicorn's
`ssl_cert_reqs` defaults to CERT_NONE), so a file that looks like access
control would control nothing; here it sets CERT_REQUIRED on both.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config.load import check_tls_keys
from .config.model import TlsSettings
from .errors import ConfigError

# The worker's environment variable for the key's password (never argv); the
# child removes it before it imports any app.
PASSWORD_VAR = "_QKHYPER_KEYFILE_PASSWORD"

# Hypercorn's own default (hypercorn.config.Config.ciphers), given to uvicorn too
# (backends/serverkeys.py carries the top-level `ciphers` key): TLS 1.2 suites;
# TLS 1.3 suites are OpenSSL's on both.
DEFAULT_CIPHERS = "ECDHE+AESGCM"


@dataclass(frozen=True, slots=True)
class ServerTls:
    """What a worker serves TLS with: absolute paths, checked by the parent (and by the worker)."""

    certfile: str
    keyfile: str
    ca_certs: str = ""
    password: str = field(default="", repr=False)  # "" in a ChildSpec: it travels in the environment
    where: str = "qkhyper"  # the table the keys came from, for messages

    @property
    def client_certs(self) -> bool:
        """Clients must present a certificate (`ca_certs` set)."""
        return bool(self.ca_certs)


def server_tls(tls: TlsSettings, base_dir: Path, where: str) -> ServerTls | None:
    """The checked TLS of one server, paths resolved from the config's folder; None for plain HTTP.

    Raises:
        ConfigError: a file that cannot be read, holds no certificate or key,
            a key that does not match the certificate, a wrong or missing password.
    """
    check_tls_keys(where, tls)
    if not tls.certfile:
        return None
    files = {key: _resolve(base_dir, getattr(tls, key)) for key in ("certfile", "keyfile", "ca_certs")}
    checked = ServerTls(files["certfile"], files["keyfile"], files["ca_certs"], tls.keyfile_password, where)
    check_files(checked)
    return checked


def check_files(tls: ServerTls) -> None:
    """Load the files as the servers will; the parent at plan time, each worker before it imports its app.

    A worker checks again because a SIGHUP roll re-reads the files (renewed
    certificates): a replacement whose files no longer load must fail before it
    reports ready, so the old worker keeps serving. (Hypercorn builds its
    context only after the app's lifespan startup, too late for that.)

    Raises:
        ConfigError: naming the key and the file.
    """
    for key in ("certfile", "keyfile", "ca_certs"):
        path = getattr(tls, key)
        if path:
            _readable(f"{tls.where}.{key}", path)
    server_context(tls, [])


def _resolve(base_dir: Path, path: str) -> str:
    return str(base_dir / path) if path else ""


def _readable(key: str, path: str) -> None:
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None


def _encrypted(keyfile: str) -> bool:
    with open(keyfile, "rb") as file:
        head = file.read(65536)
    return b"ENCRYPTED" in head  # PKCS#8 "BEGIN ENCRYPTED PRIVATE KEY" or the older "Proc-Type: 4,ENCRYPTED"


def server_context(tls: ServerTls, alpn: list[str]) -> ssl.SSLContext:
    """A server context as Hypercorn builds one (`Config.create_ssl_context`), to check the files.

    The servers build their own from `hypercorn_keys` / `uvicorn_kwargs`;
    tests/backends/test_tls_keys.py holds the three to the same verify mode,
    versions and ciphers.

    Raises:
        ConfigError: naming the key at fault, for the mistakes `server_tls` lists.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.set_ciphers(DEFAULT_CIPHERS)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        context.set_alpn_protocols(alpn)
    where = tls.where
    _load_chain(context, tls)
    if tls.ca_certs:
        try:
            context.load_verify_locations(tls.ca_certs)
        except ssl.SSLError:
            raise ConfigError(f"{where}.ca_certs: {tls.ca_certs} holds no PEM certificate") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _load_chain(context: ssl.SSLContext, tls: ServerTls) -> None:
    where = tls.where
    encrypted = _encrypted(tls.keyfile)
    if encrypted and not tls.password:
        raise ConfigError(f"{where}.keyfile {tls.keyfile} is encrypted: set {where}.keyfile_password")
    # Always a callable: with none, OpenSSL asks for a pass phrase on the terminal.
    password: Callable[[], str] = lambda: tls.password  # noqa: E731
    try:  # the certificates alone first, in a throwaway context, so the message can name the file
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(tls.certfile)
    except ssl.SSLError:
        raise ConfigError(f"{where}.certfile: {tls.certfile} holds no PEM certificate") from None
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile, password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(
                f"{where}.keyfile {tls.keyfile} is not the key of {where}.certfile {tls.certfile}"
            ) from None
        if encrypted:
            raise ConfigError(f"{where}.keyfile_password does not decrypt {where}.keyfile {tls.keyfile}") from None
        raise ConfigError(f"{where}.keyfile: {tls.keyfile} holds no PEM private key") from None


def for_child(tls: ServerTls | None) -> ServerTls | None:
    """The ChildSpec's copy: everything but the password, which goes by `password_env`."""
    return None if tls is None else dataclasses.replace(tls, password="")


def password_env(tls: ServerTls | None) -> dict[str, str]:
    return {PASSWORD_VAR: tls.password} if tls is not None and tls.password else {}


def take_password(tls: ServerTls | None, environ: MutableMapping[str, str]) -> ServerTls | None:
    """In the worker: the ChildSpec's TLS with its password, removed from the environment the app will see."""
    password = environ.pop(PASSWORD_VAR, "")
    return None if tls is None else dataclasses.replace(tls, password=password)


def hypercorn_keys(tls: ServerTls) -> dict[str, Any]:
    """Hypercorn `Config` attributes for `tls`; its `create_ssl_context` does the rest."""
    return {
        "certfile": tls.certfile,
        "keyfile": tls.keyfile,
        "keyfile_password": tls.password or None,
        "ca_certs": tls.ca_certs or None,
        "verify_mode": ssl.CERT_REQUIRED if tls.client_certs else None,
    }


def uvicorn_kwargs(tls: ServerTls) -> dict[str, Any]:
    """uvicorn `Config` arguments for `tls`, meaning what `hypercorn_keys` means to Hypercorn."""
    return {
        "ssl_certfile": tls.certfile,
        "ssl_keyfile": tls.keyfile,
        "ssl_keyfile_password": tls.password or None,
        "ssl_ca_certs": tls.ca_certs or None,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.client_certs else ssl.CERT_NONE,
    }


def url_scheme(tls: ServerTls | None) -> str:
    return "http" if tls is None else "https"


def describe(tls: ServerTls | None) -> str:
    """For `check`: where the certificate comes from, and whether clients need one."""
    if tls is None:
        return "plain HTTP"
    mutual = f", client certificates required (ca_certs {tls.ca_certs})" if tls.client_certs else ""
    return f"TLS, certfile {tls.certfile}{mutual}"
