"""TaskError: catchable as the cause's class, carries the remote traceback, pickles."""

from __future__ import annotations

import pickle

import pytest

from zray.common import errors
from zray.common.errors import GetTimeoutError, TaskError, ZrayError

pytestmark = pytest.mark.timeout(10)

TRACEBACK = 'Traceback (most recent call last):\n  File "job.py", line 3, in f\nValueError: bad input\n'


class NeedsArgs(Exception):
    def __init__(self, a: int, b: str) -> None:
        super().__init__(a, b)
        self.a, self.b = a, b


class Final(Exception):
    def __init_subclass__(cls, **kwargs: object) -> None:
        raise TypeError("Final cannot be subclassed")


def make(cause: BaseException | None) -> TaskError:
    return TaskError("mod.f", TRACEBACK, cause, pid=1234, node="abcdef0123456789")


def test_instance_of_cause_class() -> None:
    err = make(ValueError("bad input")).as_instanceof_cause()
    assert isinstance(err, TaskError)
    assert isinstance(err, ValueError)
    assert isinstance(err, ZrayError)
    with pytest.raises(ValueError):
        raise err


def test_message_names_function_pid_node_and_traceback() -> None:
    err = make(ValueError("bad input")).as_instanceof_cause()
    text = str(err)
    assert "mod.f" in text
    assert "pid=1234" in text
    assert "abcdef01" in text
    assert "ValueError: bad input" in text
    assert 'File "job.py", line 3' in text
    assert err.args == (text,)
    assert err.cause is not None and err.cause.args == ("bad input",)
    assert err.traceback_str == TRACEBACK


def test_cause_with_required_init_args() -> None:
    err = make(NeedsArgs(1, "x")).as_instanceof_cause()
    assert isinstance(err, NeedsArgs) and isinstance(err, TaskError)
    assert isinstance(err.cause, NeedsArgs) and err.cause.a == 1


def test_os_error_cause() -> None:
    """OSError subclasses are what `open()` raises: the commonest remote failure."""
    err = make(FileNotFoundError(2, "No such file", "/missing")).as_instanceof_cause()
    assert isinstance(err, FileNotFoundError) and isinstance(err, TaskError)
    assert "mod.f" in str(err)


def test_dual_class_is_cached_and_named() -> None:
    a = make(KeyError("a")).as_instanceof_cause()
    b = make(KeyError("b")).as_instanceof_cause()
    assert type(a) is type(b)
    assert "KeyError" in type(a).__name__


@pytest.mark.parametrize("cause", [None, make(None)])
def test_without_usable_cause_returns_itself(cause: BaseException | None) -> None:
    err = make(cause)
    assert err.as_instanceof_cause() is err


def test_unsubclassable_cause_returns_itself() -> None:
    err = make(Final("no"))
    assert err.as_instanceof_cause() is err


@pytest.mark.parametrize("cause", [ValueError("v"), KeyError("k"), None])
def test_pickle_round_trip(cause: BaseException | None) -> None:
    original = make(cause)
    for err in (original, original.as_instanceof_cause()):
        restored = pickle.loads(pickle.dumps(err))
        assert isinstance(restored, TaskError)
        assert restored.function_name == "mod.f"
        assert restored.traceback_str == TRACEBACK
        assert restored.pid == 1234 and restored.node == "abcdef0123456789"
        assert str(restored) == str(original)
        if cause is None:
            assert restored.cause is None
        else:
            assert type(restored.cause) is type(cause)
            assert restored.cause.args == cause.args
            again = restored.as_instanceof_cause()
            assert isinstance(again, type(cause))


def test_get_timeout_is_a_timeout_error() -> None:
    assert issubclass(GetTimeoutError, TimeoutError)
    assert issubclass(GetTimeoutError, ZrayError)


def test_one_hierarchy() -> None:
    for name in ("ConfigError", "ConnectionFailedError", "ProtocolError", "RequestError",
                 "GetTimeoutError", "ObjectStoreFullError", "ObjectLostError",
                 "WorkerCrashedError", "TaskCancelledError", "RaySystemError", "TaskError"):
        assert issubclass(getattr(errors, name), ZrayError), name
