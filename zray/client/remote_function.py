"""`@zray.remote` on functions: RemoteFunction with `.remote()` and `.options()`."""

from __future__ import annotations

import hashlib
from typing import Any

import cloudpickle

from zray.common.errors import ConfigError

TASK_OPTIONS = {"num_cpus", "num_gpus", "resources", "num_returns", "max_retries",
                "retry_exceptions", "name", "memory", "scheduling_strategy", "runtime_env"}


def task_resources(opts: dict[str, Any], default_cpus: float = 1.0) -> dict[str, float]:
    res: dict[str, float] = {"CPU": float(opts.get("num_cpus", default_cpus) or 0)}
    if opts.get("num_gpus"):
        res["GPU"] = float(opts["num_gpus"])
    if opts.get("memory"):
        res["memory"] = float(opts["memory"])
    for name, amount in (opts.get("resources") or {}).items():
        if name in ("CPU", "GPU"):
            raise ConfigError(f"use num_cpus/num_gpus, not resources={{{name!r}: ...}}")
        res[name] = float(amount)
    for name, amount in res.items():
        if amount < 0:
            raise ConfigError(f"resource {name} must not be negative, got {amount}")
    return {k: v for k, v in res.items() if v > 0}


def check_options(opts: dict[str, Any], allowed: set[str], what: str) -> None:
    unknown = set(opts) - allowed
    if unknown:
        raise ConfigError(f"unknown option(s) for {what}: {', '.join(sorted(unknown))}; "
                          f"allowed: {', '.join(sorted(allowed))}")
    n = opts.get("num_returns", 1)
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"num_returns must be a positive int, got {n!r}")
    if "scheduling_strategy" in opts:
        from zray.util.scheduling_strategies import placement_fields

        placement_fields(opts["scheduling_strategy"])  # bad values fail at .options() time


class RemoteFunction:
    def __init__(self, fn: Any, options: dict[str, Any]) -> None:
        check_options(options, TASK_OPTIONS, "a remote function")
        self._function = fn
        self._options = options
        self._name = getattr(fn, "__qualname__", getattr(fn, "__name__", "task"))
        self._pickled: bytes | None = None
        self._function_id = ""
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", "task")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"remote function {self._name} cannot be called directly; "
                        f"use {self.__name__}.remote(...)")

    def _export(self) -> str:
        if self._pickled is None:
            self._pickled = cloudpickle.dumps(self._function)
            self._function_id = hashlib.blake2b(self._pickled, digest_size=16).hexdigest()
        return self._function_id

    def options(self, **options: Any) -> RemoteFunction:
        merged = {**self._options, **options}
        clone = RemoteFunction(self._function, merged)
        clone._pickled, clone._function_id = self._pickled, self._function_id
        return clone

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        from zray.client import api

        client = api._client_or_auto_init()
        function_id = self._export()
        assert self._pickled is not None
        client.export_function(function_id, self._pickled)
        opts = self._options
        num_returns = opts.get("num_returns", 1)
        placement = None
        if opts.get("scheduling_strategy") not in (None, "DEFAULT"):
            from zray.util.scheduling_strategies import placement_fields

            placement = placement_fields(opts["scheduling_strategy"])
        refs = client.submit(function_id, opts.get("name") or self._name, args, kwargs,
                             num_returns, task_resources(opts), int(opts.get("max_retries", 3)),
                             bool(opts.get("retry_exceptions", False)), opts.get("name"),
                             placement=placement)
        return refs[0] if num_returns == 1 else refs
