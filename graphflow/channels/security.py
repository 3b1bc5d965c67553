"""Who may bind where: loopback by default; off loopback only with CURVE keys or ``insecure``.

``graphflow keys NAME`` writes a CURVE key pair (``NAME.key`` public, ``NAME.key_secret``
secret, libzmq's certificate format). A publisher given its ``.key_secret`` encrypts and
authenticates its end; with a folder of client ``.key`` files it accepts only those clients.
A subscriber needs the publisher's public ``.key`` (and its own ``.key_secret``, or a fresh
pair is made for it).
"""
from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.auth

INSECURE_ENV = "GRAPHFLOW_INSECURE"  # set by `graphflow run --insecure`


class ChannelConfigError(ValueError):
    """An endpoint or key setting that cannot work; the text says which and why."""


def endpoint_host(endpoint: str) -> str | None:
    """The host of a tcp:// endpoint; None for ipc:// and inproc://."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return None
    if not endpoint.startswith("tcp://"):
        raise ChannelConfigError(f"endpoint {endpoint!r}: use tcp://HOST:PORT or ipc:///path")
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    try:
        parts.port
    except ValueError:
        raise ChannelConfigError(f"endpoint {endpoint!r}: the port is not a number") from None
    if not host or parts.port is None and not endpoint.endswith(":*"):
        raise ChannelConfigError(f"endpoint {endpoint!r}: use tcp://HOST:PORT")
    return host


def is_loopback(endpoint: str) -> bool:
    host = endpoint_host(endpoint)
    if host is None:
        return True
    if host == "localhost":
        return True
    if host == "*":
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(info[4][0]).is_loopback
                       for info in socket.getaddrinfo(host, None))
        except OSError:
            return False


def insecure_allowed(param: bool) -> bool:
    return bool(param) or os.environ.get(INSECURE_ENV, "") not in ("", "0")


def check_bind(endpoint: str, has_keys: bool, insecure: bool) -> None:
    if not is_loopback(endpoint) and not has_keys and not insecure_allowed(insecure):
        raise ChannelConfigError(
            f"binding {endpoint} exposes the channel off this host: give CURVE keys "
            f"(graphflow keys NAME; param curve_secret_key) or allow it with insecure: true / --insecure")


def load_keys(path: str, what: str) -> tuple[bytes, bytes | None]:
    """(public, secret) from a ``graphflow keys`` file; secret is None for a ``.key`` file."""
    file = Path(os.path.expanduser(path))
    if file.is_dir():
        raise ChannelConfigError(f"{what}: {file} is a folder: give the key file in it (NAME.key or NAME.key_secret)")
    if not file.exists():
        raise ChannelConfigError(f"{what}: key file {file} not found (make a pair with: graphflow keys NAME)")
    if not file.is_file():
        raise ChannelConfigError(f"{what}: {file} is not a key file (a device or a pipe)")
    try:
        public, secret = zmq.auth.load_certificate(str(file))
    except Exception as exc:
        raise ChannelConfigError(f"{what}: {file} is not a CURVE key file: {exc}") from None
    return public, secret


def check_clients(folder: str) -> Path:
    """The folder of allowed clients' public keys: it must exist and hold readable ``.key`` files
    (libzmq's authenticator would otherwise log an error and let no one in)."""
    path = Path(os.path.expanduser(folder))
    if not path.is_dir():
        raise ChannelConfigError(f"curve_clients: folder {path} not found (it holds the allowed clients' "
                                 f"public .key files)")
    keys = sorted(path.glob("*.key"))
    if not keys:
        raise ChannelConfigError(f"curve_clients: {path} holds no public .key file, so no client could connect")
    for key in keys:
        load_keys(str(key), "curve_clients")
    return path


def configure_server(sock: zmq.Socket, secret_key_file: str) -> None:
    public, secret = load_keys(secret_key_file, "curve_secret_key")
    if secret is None:
        raise ChannelConfigError(f"curve_secret_key: {secret_key_file} holds only a public key; "
                                 f"give the .key_secret file")
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True


def configure_client(sock: zmq.Socket, server_key_file: str, secret_key_file: str = "") -> None:
    server_public, _ = load_keys(server_key_file, "curve_server_key")
    if secret_key_file:
        public, secret = load_keys(secret_key_file, "curve_secret_key")
        if secret is None:
            raise ChannelConfigError(f"curve_secret_key: {secret_key_file} holds only a public key")
    else:
        public, secret = zmq.curve_keypair()
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


def make_keys(name: str, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        public, secret = zmq.auth.create_certificates(str(folder), name)
        os.chmod(secret, 0o600)
    except OSError:  # a full disk: no half-written key left to be refused later as "exists"
        for ending in (".key", ".key_secret"):
            (folder / f"{name}{ending}").unlink(missing_ok=True)
        raise
    return Path(public), Path(secret)
