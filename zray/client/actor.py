"""`@zray.remote` on classes: ActorClass, ActorHandle and their methods."""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

import cloudpickle

from zray.client.remote_function import check_options, task_resources
from zray.common.errors import ConfigError
from zray.common.ids import ActorID, TaskID
from zray.common.messages.tables import ACTORS, KV, ActorInfo
from zray.common.messages.task import ActorCreation

ACTOR_OPTIONS = {"num_cpus", "num_gpus", "resources", "memory", "max_restarts", "max_task_retries",
                 "max_concurrency", "name", "namespace", "lifetime", "get_if_exists",
                 "scheduling_strategy", "runtime_env"}
DEFAULT_NAMESPACE = "default"


def method(*, num_returns: int = 1) -> Any:
    """Decorator for actor methods: `@zray.method(num_returns=2)`."""
    if not isinstance(num_returns, int) or num_returns < 1:
        raise ConfigError(f"num_returns must be a positive int, got {num_returns!r}")

    def mark(fn: Any) -> Any:
        fn.__zray_num_returns__ = num_returns
        return fn

    return mark


def _methods(cls: type) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("__") and name != "__call__":
            continue
        out[name] = int(getattr(member, "__zray_num_returns__", 1))
    return out


def _is_async(cls: type) -> bool:
    return any(inspect.iscoroutinefunction(m) for _, m in inspect.getmembers(cls, callable))


def name_key(namespace: str, name: str) -> str:
    return f"actor-name:{namespace}:{name}"


class ActorClass:
    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        check_options(options, ACTOR_OPTIONS, "an actor class")
        self._cls = cls
        self._options = options
        self._pickled: bytes | None = None
        self._function_id = ""
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor class {self.__name__} cannot be instantiated directly; "
                        f"use {self.__name__}.remote(...)")

    def options(self, **options: Any) -> ActorClass:
        clone = ActorClass(self._cls, {**self._options, **options})
        clone._pickled, clone._function_id = self._pickled, self._function_id
        return clone

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        from zray.client import api

        client = api._client_or_auto_init()
        opts = self._options
        name = opts.get("name")
        namespace = opts.get("namespace") or DEFAULT_NAMESPACE
        lifetime = opts.get("lifetime")
        if lifetime not in (None, "detached", "non_detached"):
            raise ConfigError(f"lifetime must be 'detached' or 'non_detached', got {lifetime!r}")
        if name is not None:
            existing = _lookup(client, name, namespace)
            if existing is not None:
                return self._name_taken(existing, name, namespace)
        if self._pickled is None:
            self._pickled = cloudpickle.dumps(self._cls)
            self._function_id = hashlib.blake2b(self._pickled, digest_size=16).hexdigest()
        client.export_function(self._function_id, self._pickled)
        task_id = client.next_task_id()
        creating = TaskID.from_hex(task_id)
        actor_id = ActorID.of(creating.job_id(), creating).hex()
        methods = _methods(self._cls)
        creation = ActorCreation(
            actor_id=actor_id, class_name=self._cls.__name__, name=name, namespace=namespace,
            detached=lifetime == "detached", max_restarts=int(opts.get("max_restarts", 0)),
            max_task_retries=int(opts.get("max_task_retries", 0)),
            max_concurrency=int(opts.get("max_concurrency", 1)), is_async=_is_async(self._cls),
            methods=methods)
        # An actor holds no CPU for its life unless asked to (as in Ray).
        resources = task_resources(opts, default_cpus=0.0)
        # Registered before returning, so get_actor() finds it at once; the raylet
        # updates the row as the actor starts, restarts or dies. The row exists
        # before the name is claimed, so whoever reads the name finds the row.
        info = ActorInfo(actor_id=actor_id, class_name=self._cls.__name__, job_id=task_id[24:],
                         state="PENDING", name=name, namespace=namespace,
                         detached=creation.detached, max_restarts=creation.max_restarts,
                         is_async=creation.is_async, methods=methods)
        client.gcs.put(ACTORS, actor_id, info.model_dump_json().encode())
        if name is not None and not _claim_name(client, namespace, name, actor_id):
            client.gcs.delete(ACTORS, actor_id)
            winner = _lookup(client, name, namespace)
            if winner is not None:
                return self._name_taken(winner, name, namespace)
            raise ValueError(f"the actor name {name!r} in namespace {namespace!r} is being taken "
                             f"by another creator; try again")
        placement = None
        if opts.get("scheduling_strategy") not in (None, "DEFAULT"):
            from zray.util.scheduling_strategies import placement_fields

            placement = placement_fields(opts["scheduling_strategy"])
        # The constructor is placed like a task (raylet/actor_placement.py); it is never
        # retried as a task: a lost node's actors are the global scheduler's to restart.
        client.submit(self._function_id, f"{self._cls.__name__}.__init__", args, kwargs, 1,
                      resources, 0, False, None, task_id=task_id, actor_creation=creation,
                      placement=placement)
        return ActorHandle(actor_id, self._cls.__name__, methods)

    def _name_taken(self, existing: ActorHandle, name: str, namespace: str) -> ActorHandle:
        if self._options.get("get_if_exists"):
            return existing
        raise ValueError(f"an actor named {name!r} already exists in namespace {namespace!r}; "
                         f"use get_if_exists=True or zray.get_actor()")


def _claim_name(client: Any, namespace: str, name: str, actor_id: str) -> bool:
    """Atomically take the name; a dead actor's name is taken over."""
    key = name_key(namespace, name)
    stored, holder = client.gcs.put_if_absent(KV, key, actor_id.encode())
    while not stored:
        assert holder is not None
        row = client.gcs.get(ACTORS, holder.decode())
        if row is not None and ActorInfo.model_validate_json(row).state != "DEAD":
            return False
        # Take the name over from a dead holder, unless another creator just did.
        stored, holder = client.gcs.put_if_absent(KV, key, actor_id.encode(),
                                                  expected=holder.decode())
    return True


def _lookup(client: Any, name: str, namespace: str) -> ActorHandle | None:
    raw = client.gcs.get(KV, name_key(namespace, name))
    if raw is None:
        return None
    info_raw = client.gcs.get(ACTORS, raw.decode())
    if info_raw is None:
        return None
    info = ActorInfo.model_validate_json(info_raw)
    if info.state == "DEAD":
        return None
    return ActorHandle(info.actor_id, info.class_name, info.methods)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    from zray.client import api

    handle = _lookup(api._client(), name, namespace or DEFAULT_NAMESPACE)
    if handle is None:
        raise ValueError(f"no live actor named {name!r} in namespace "
                         f"{namespace or DEFAULT_NAMESPACE!r}")
    return handle


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, num_returns: int) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor method {self._name} cannot be called directly; "
                        f"use .{self._name}.remote(...)")

    def options(self, *, num_returns: int | None = None, **_ignored: Any) -> ActorMethod:
        return ActorMethod(self._handle, self._name, num_returns or self._num_returns)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        from zray.client import api

        client = api._client()
        handle = self._handle
        refs = client.submit("", f"{handle._class_name}.{self._name}", args, kwargs,
                             self._num_returns, {}, 0, False, None,
                             actor_id=handle._actor_id, method=self._name)
        return refs[0] if self._num_returns == 1 else refs


class ActorHandle:
    def __init__(self, actor_id: str, class_name: str, methods: dict[str, int]) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods

    def __getattr__(self, name: str) -> ActorMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._methods:
            raise AttributeError(f"actor {self._class_name} has no method {name!r}")
        return ActorMethod(self, name, self._methods[name])

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorHandle, (self._actor_id, self._class_name, self._methods))

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    @property
    def actor_id(self) -> str:
        return self._actor_id


def kill(actor: ActorHandle, *, no_restart: bool = True) -> None:
    from zray.client import api

    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() takes an actor handle, got {type(actor).__name__}")
    api._client().kill_actor(actor._actor_id, no_restart)

