"""Exceptions raised by the client."""

from __future__ import annotations


class ChatError(Exception):
    """The server answered a frame with an `error` frame (a contract error code)."""

    def __init__(self, code: str, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class ConnectionLost(Exception):
    """The connection dropped before the answer to a frame arrived; the frame may or may
    not have been handled. `send` retries on its own (its `client_msg_id` makes that safe);
    `request` raises this unless asked to retry."""


class ClientClosed(Exception):
    """The client was closed (or gave up for good) while waiting."""


class Refused(Exception):
    """The server refused this client in a way that retrying cannot fix (origin refused)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection refused with close code {code}: {reason}")
        self.code = code
        self.reason = reason
