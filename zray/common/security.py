"""Cluster tokens and the CURVE keys derived from them.

Threat model. Whoever can send a task can run any code as the cluster's
user, so every TCP socket must refuse parties that do not hold the cluster
token. A token is 32 random bytes (base64url text); both CURVE key pairs of
a cluster derive from it: the servers' pair and one pair shared by all
clients. A CURVE client must know the server's public key to open the
handshake (its HELLO is encrypted to that key), and that key is never sent,
stored or logged anywhere, so without the token the handshake fails and not
one message reaches a handler; with it, the connection is encrypted and
authenticated both ways (a client also knows it talks to the real cluster).
No ZAP handler is needed: it could only check a client key derived from the
same token.

Not covered: `ipc://` sockets, which live in 0700 session folders, trust
every process of the same user; whoever holds the token is fully trusted
(one client key, no per-node identities: revoking means a new token and a
restarted cluster); the HTTP dashboard and metrics endpoints are read-only
and unauthenticated (they bind 127.0.0.1 unless told otherwise).

Where a process finds its token: `use_token()` (a --token flag, `zray.init(
_token=...)`) > the `ZRAY_TOKEN` environment variable > the token file that
`zray start` writes under the session root (mode 0600, owner only).
`ZRAY_INSECURE=1` (from `zray start --insecure`) lets a process without a
token use plain TCP: an explicit operator choice, never a default.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import secrets
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from zray.common.errors import ConfigError

TOKEN_ENV = "ZRAY_TOKEN"
INSECURE_ENV = "ZRAY_INSECURE"
TOKEN_FILE_NAME = "cluster_token"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class CurveKeys:
    """z85-encoded CURVE keys of one cluster."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes

    @classmethod
    def from_token(cls, token: str) -> CurveKeys:
        secret = _decode(token)
        server_secret = _derive(secret, b"server")
        client_secret = _derive(secret, b"client")
        return cls(zmq.curve_public(server_secret), server_secret,
                   zmq.curve_public(client_secret), client_secret)


def _derive(secret: bytes, role: bytes) -> bytes:
    return z85.encode(hashlib.sha256(b"zray curve key\0" + role + b"\0" + secret).digest())


def _decode(token: str) -> bytes:
    return base64.urlsafe_b64decode(check_token(token) + "=")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def check_token(text: str) -> str:
    token = text.strip()
    if not _TOKEN_RE.match(token):
        raise ConfigError("not a zray cluster token (expected the 43 characters that "
                          "`zray start --head` printed)")
    return token


# the token file ------------------------------------------------------------
def token_file() -> str:
    root = os.environ.get("ZRAY_SESSION_ROOT", "/tmp/zray_sessions")
    return os.path.join(root, TOKEN_FILE_NAME)


def write_token_file(token: str, path: str | None = None) -> str:
    """Write the token readable by its owner only (atomically); returns the path."""
    path = path or token_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (check_token(token) + "\n").encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def read_token_file(path: str | None = None) -> str | None:
    """The token in the file, None when there is no file; refuses a file others can read."""
    path = path or token_file()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the cluster token file {path}: {exc}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.getuid():
            raise ConfigError(f"the cluster token file {path} belongs to another user "
                              f"(uid {info.st_uid}); remove it or set {TOKEN_ENV}")
        if info.st_mode & 0o077:
            raise ConfigError(f"the cluster token file {path} is readable by others "
                              f"(mode {info.st_mode & 0o777:o}); run `chmod 600 {path}`")
        text = os.read(fd, 4096).decode(errors="replace")
    finally:
        os.close(fd)
    try:
        return check_token(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def remove_token_file(path: str | None = None) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path or token_file())


# this process's keys ---------------------------------------------------------
class _State:
    explicit: str | None = None
    found: tuple[str, str] | None = None  # (token, where it came from)
    keys: CurveKeys | None = None


_state = _State()


def use_token(token: str | None) -> None:
    """Make `token` this process's cluster token (None: look it up again)."""
    _state.explicit = check_token(token) if token is not None else None
    _state.found = None
    _state.keys = None


def find_token() -> tuple[str, str] | None:
    """(token, where it came from), or None when this process has none."""
    if _state.found is not None:
        return _state.found
    found: tuple[str, str] | None = None
    if _state.explicit is not None:
        found = (_state.explicit, "an explicit token")
    elif os.environ.get(TOKEN_ENV):
        try:
            found = (check_token(os.environ[TOKEN_ENV]), TOKEN_ENV)
        except ConfigError as exc:
            raise ConfigError(f"{TOKEN_ENV}: {exc}") from None
    else:
        token = read_token_file()
        if token is not None:
            found = (token, token_file())
    _state.found = found
    return found


def process_keys() -> CurveKeys | None:
    if _state.keys is None:
        found = find_token()
        if found is not None:
            _state.keys = CurveKeys.from_token(found[0])
    return _state.keys


def insecure() -> bool:
    """Whether the operator allowed plain TCP for a process without a token."""
    return os.environ.get(INSECURE_ENV, "") in ("1", "true", "yes")
