"""Per-request plumbing: a request id, one JSON access-log line, latency figures, body cap."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.problems import problem
from app.errors import ErrorCode
from app.infra.metrics import Metrics

log = structlog.get_logger("chat.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; rendered as 413 PAYLOAD_TOO_LARGE by the handler."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class Observe:
    """Pure ASGI middleware (not BaseHTTPMiddleware): it must not buffer or break WebSockets."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        status = 500
        started = time.perf_counter()
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                raise BodyTooLarge
            return message

        async def tagged_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        declared = headers.get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            # Refused unread, yet tagged like every other response.
            await problem(ErrorCode.PAYLOAD_TOO_LARGE, "request body too large")(
                scope, receive, tagged_send
            )
            return

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, counted_receive, tagged_send)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                template = getattr(route, "path", "unmatched")
                method = scope["method"]
                self.metrics.http_requests.labels(method, template, str(status)).inc()
                self.metrics.http_latency.labels(method, template).observe(elapsed)
                log.info(
                    "request",
                    method=method,
                    route=template,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
