"""The one error hierarchy of zray.

Remote failures carry the pickled cause and its traceback text. A `TaskError`
raised by `get` is also an instance of the original exception's class, so
`except ValueError:` catches a remote ValueError.
"""

from __future__ import annotations

from typing import Any


class ZrayError(Exception):
    """Base of every error zray raises."""


class ConfigError(ZrayError):
    """Bad settings or arguments given by the user or operator."""


class ConnectionFailedError(ZrayError):
    """A service could not be reached within its deadline."""


class AuthenticationError(ConnectionFailedError):
    """A tcp:// peer rejected this process's CURVE handshake: another cluster token."""


class ProtocolError(ZrayError):
    """A message could not be decoded (bad frames, version, kind or body)."""


class RayletDiedError(ConnectionFailedError):
    """The raylet this driver is attached to died: results it was to deliver are lost."""


class RequestError(ZrayError):
    """A service answered a request with an error reply."""


class GetTimeoutError(ZrayError, TimeoutError):
    """`get` or `wait` ran past its timeout."""


class ObjectStoreFullError(ZrayError):
    """The object store could not make room for a new object in time."""


class ObjectLostError(ZrayError):
    """An object has no copy left and cannot be rebuilt."""


class OwnerDiedError(ObjectLostError):
    """The process (or node) that owns an object is gone, and no copy of its value is left."""


class WorkerCrashedError(ZrayError):
    """The worker process running a task died, and retries ran out."""


class OutOfMemoryError(WorkerCrashedError):
    """The worker running a task was killed for lack of memory, and retries ran out."""


class NodeDiedError(WorkerCrashedError):
    """The node running a task died (or was cut off), and retries ran out."""


class TaskCancelledError(ZrayError):
    """The task was cancelled with `zray.cancel`."""


class ActorDiedError(ZrayError):
    """The actor is dead; the message names why."""


class TaskUnschedulableError(ZrayError):
    """No node can ever run the task as asked (e.g. a hard affinity to a dead node)."""


class RaySystemError(ZrayError):
    """An internal failure that is not the user's code."""


class TaskError(ZrayError):
    """A task raised; carries the cause and the remote traceback text."""

    def __init__(self, function_name: str, traceback_str: str, cause: BaseException | None,
                 pid: int = 0, node: str = "") -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        self.node = node
        # Not super(): in a dual class the next __init__ would be the cause's own.
        BaseException.__init__(self, self._message())

    def _message(self) -> str:
        where = f" (pid={self.pid}, node={self.node[:8]})" if self.pid else ""
        return f"task {self.function_name}{where} failed:\n{self.traceback_str.rstrip()}"

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskError, (self.function_name, self.traceback_str, self.cause, self.pid, self.node))

    def as_instanceof_cause(self) -> TaskError:
        """This error as an instance of both TaskError and the cause's class."""
        root = self.cause
        while isinstance(root, TaskError):  # a task that failed reading a failed task's result
            root = root.cause
        cause_cls = type(root) if root is not None else None
        if cause_cls is None or not _subclassable(cause_cls):
            return self
        name = f"TaskError({cause_cls.__name__})"
        dual = _dual_class(cause_cls, name)
        err: TaskError = dual.__new__(dual)  # type: ignore[call-overload]
        TaskError.__init__(err, self.function_name, self.traceback_str, self.cause, self.pid, self.node)
        err.args = (self._message(),)
        return err


_DUAL_CACHE: dict[type, type] = {}


def _subclassable(cls: type) -> bool:
    try:
        type("probe", (TaskError, cls), {})
    except TypeError:
        return False
    return True


def _dual_class(cause_cls: type, name: str) -> type:
    cls = _DUAL_CACHE.get(cause_cls)
    if cls is None:

        def __reduce__(self: TaskError) -> tuple[Any, ...]:
            return (TaskError, (self.function_name, self.traceback_str, self.cause, self.pid, self.node))

        cls = type(name, (TaskError, cause_cls), {
            "__init__": lambda self, *a, **k: None,
            "__str__": TaskError.__str__,
            "__reduce__": __reduce__,
        })
        _DUAL_CACHE[cause_cls] = cls
    return cls
