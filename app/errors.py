"""One error taxonomy for REST and WebSocket: a code from the contract and its HTTP status."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    UNAUTHORIZED = "UNAUTHORIZED"
    FORBIDDEN = "FORBIDDEN"
    ROOM_NOT_FOUND = "ROOM_NOT_FOUND"
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
    USER_NOT_FOUND = "USER_NOT_FOUND"
    NOT_A_MEMBER = "NOT_A_MEMBER"
    INVALID_FRAME = "INVALID_FRAME"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    RATE_LIMITED = "RATE_LIMITED"
    CONFLICT = "CONFLICT"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.ROOM_NOT_FOUND: 404,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.USER_NOT_FOUND: 404,
    ErrorCode.NOT_A_MEMBER: 404,
    ErrorCode.INVALID_FRAME: 400,
    ErrorCode.UNKNOWN_TYPE: 400,
    ErrorCode.VALIDATION_FAILED: 422,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.CONFLICT: 409,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}

TITLES: dict[ErrorCode, str] = {
    ErrorCode.UNAUTHORIZED: "Authentication required",
    ErrorCode.FORBIDDEN: "Not allowed",
    ErrorCode.ROOM_NOT_FOUND: "Room not found",
    ErrorCode.MESSAGE_NOT_FOUND: "Message not found",
    ErrorCode.USER_NOT_FOUND: "User not found",
    ErrorCode.NOT_A_MEMBER: "Not a member",
    ErrorCode.INVALID_FRAME: "Invalid frame",
    ErrorCode.UNKNOWN_TYPE: "Unknown frame type",
    ErrorCode.VALIDATION_FAILED: "Validation failed",
    ErrorCode.PAYLOAD_TOO_LARGE: "Payload too large",
    ErrorCode.RATE_LIMITED: "Rate limited",
    ErrorCode.CONFLICT: "Conflict",
    ErrorCode.UNAVAILABLE: "Service unavailable",
    ErrorCode.INTERNAL: "Internal error",
}


class ChatError(Exception):
    """An expected failure with a contract code; never rendered as a bare 500."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.code]


class Unauthorized(ChatError):
    code = ErrorCode.UNAUTHORIZED


class Forbidden(ChatError):
    code = ErrorCode.FORBIDDEN


class RoomNotFound(ChatError):
    code = ErrorCode.ROOM_NOT_FOUND


class MessageNotFound(ChatError):
    code = ErrorCode.MESSAGE_NOT_FOUND


class UserNotFound(ChatError):
    code = ErrorCode.USER_NOT_FOUND


class NotAMember(ChatError):
    code = ErrorCode.NOT_A_MEMBER


class ValidationFailed(ChatError):
    code = ErrorCode.VALIDATION_FAILED


class Conflict(ChatError):
    code = ErrorCode.CONFLICT


class Unavailable(ChatError):
    code = ErrorCode.UNAVAILABLE


class RateLimited(ChatError):
    code = ErrorCode.RATE_LIMITED


class PayloadTooLarge(ChatError):
    code = ErrorCode.PAYLOAD_TOO_LARGE
