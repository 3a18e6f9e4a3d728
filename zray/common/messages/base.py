"""Base of every message: frozen, no extra fields, a `kind` literal."""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: str


class ErrorReply(Message):
    """Answer to a request that could not be served; names the cause."""

    kind: Literal["ErrorReply"] = "ErrorReply"
    req_id: int = 0
    error: str


_M = TypeVar("_M", bound=BaseModel)
# model class -> (defaults of its optional fields, names of those that are empty lists or dicts)
_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], tuple[str, ...]]] = {}


def construct(cls: type[_M], **values: Any) -> _M:
    """An instance built without validation, for the task path, where zray's own
    code produces every field, typed: `model_construct` without its per-field
    default resolution, which costs more than encoding the message."""
    known = _DEFAULTS.get(cls)
    if known is None:
        defaults = {name: f.default for name, f in cls.model_fields.items() if not f.is_required()}
        known = _DEFAULTS[cls] = (defaults, tuple(n for n, v in defaults.items()
                                                  if isinstance(v, (list, dict))))
    defaults, mutable = known
    fields = {**defaults, **values}
    for name in mutable:
        if name not in values:
            fields[name] = type(defaults[name])()
    obj = cls.__new__(cls)
    setattr_ = object.__setattr__
    setattr_(obj, "__dict__", fields)
    setattr_(obj, "__pydantic_fields_set__", set(values))
    setattr_(obj, "__pydantic_extra__", None)
    setattr_(obj, "__pydantic_private__", None)
    return obj
