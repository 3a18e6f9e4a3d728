"""Base of every message: frozen, no extra fields, a `kind` literal."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    kind: str


class ErrorReply(Message):
    """Answer to a request that could not be served; names the cause."""

    kind: Literal["ErrorReply"] = "ErrorReply"
    req_id: int = 0
    error: str
