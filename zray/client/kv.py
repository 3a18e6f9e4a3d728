"""`zray.kv`: a small key-value store in the GCS, shared by every driver and
worker of the cluster (configuration, coordination, results to pass on).

Keys are bytes or str (str is stored as its UTF-8 bytes, so "a" and b"a" are
the same key); values are bytes. Values live in the GCS, which keeps them
across restarts; large data belongs in the object store (`zray.put`).
"""

from __future__ import annotations

import builtins

from zray.common.messages.tables import USER_KV

MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 64 * 1024 * 1024  # what a GCS shard accepts by default


def _key_bytes(key: str | bytes, what: str = "key") -> bytes:
    if isinstance(key, str):
        raw = key.encode()
    elif isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
    else:
        raise TypeError(f"zray.kv {what} must be str or bytes, not {type(key).__name__}")
    if len(raw) > MAX_KEY_BYTES:
        raise ValueError(f"zray.kv {what} has {len(raw)} bytes; the limit is {MAX_KEY_BYTES}")
    return raw


def _stored_key(key: str | bytes) -> str:
    raw = _key_bytes(key)
    if not raw:
        raise ValueError("zray.kv key must not be empty")
    # Hex keeps any bytes JSON-safe and keeps byte order, so prefixes still scan.
    return raw.hex()


def _value_bytes(value: bytes) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"zray.kv values must be bytes, not {type(value).__name__}; "
                        "encode str values and pickle objects yourself")
    raw = bytes(value)
    if len(raw) > MAX_VALUE_BYTES:
        raise ValueError(f"zray.kv value has {len(raw)} bytes; the limit is {MAX_VALUE_BYTES} "
                         "(put large data in the object store with zray.put)")
    return raw


def _gcs():  # type: ignore[no-untyped-def]
    from zray.client.api import _client

    return _client().gcs


def put(key: str | bytes, value: bytes, *, overwrite: bool = True) -> bool:
    """Store `value` under `key`. With overwrite=False an existing key is left
    as it is. Returns whether the value was stored."""
    stored_key, raw = _stored_key(key), _value_bytes(value)
    gcs = _gcs()
    if overwrite:
        gcs.put(USER_KV, stored_key, raw)
        return True
    stored, _ = gcs.put_if_absent(USER_KV, stored_key, raw)
    return stored


def get(key: str | bytes) -> bytes | None:
    """The value under `key`, or None."""
    value: bytes | None = _gcs().get(USER_KV, _stored_key(key))
    return value


def exists(key: str | bytes) -> bool:
    return get(key) is not None


def delete(key: str | bytes) -> None:
    """Remove `key`; removing a missing key is not an error."""
    _gcs().delete(USER_KV, _stored_key(key))


def list(prefix: str | bytes = b"") -> builtins.list[bytes]:  # noqa: A001  (Ray's name)
    """The keys that start with `prefix`, in byte order."""
    hex_prefix = _key_bytes(prefix, "prefix").hex()
    return [bytes.fromhex(k) for k, _ in _gcs().scan(USER_KV, hex_prefix)]
