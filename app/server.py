"""uvicorn, with a shutdown that closes WebSockets the way the contract says.

On SIGTERM uvicorn stops listening and then shuts its connections down. Before it does,
every socket set up here is drained (the frame in hand is answered) and closed with 1001,
"going away": clients reconnect, to another instance behind the load balancer, and sync.
Sockets still being set up get the same 1001 from the protocol's own `shutdown` (uvicorn's
would be 1012).
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from app.lifespan import SHUTDOWN_DRAIN_S, Services
from app.ws.protocol import CLOSE_GOING_AWAY, GOING_AWAY


def allow_token_headers(max_token_bytes: int) -> None:
    """Let a header line carry a token of the largest accepted size.

    The WebSocket handshake parser (websockets' sans-I/O `http11`, which uvicorn's
    protocol uses) refuses header lines over 8,192 bytes, so a valid token near the 8 KiB
    limit (plus "Authorization: Bearer ") could not open a socket by header. The limit is
    read when a line is parsed, so raising it here, before serving, is enough.
    """
    from websockets import http11

    http11.MAX_LINE_LENGTH = max(http11.MAX_LINE_LENGTH, max_token_bytes + 256)


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting first: nothing new arrives while draining
        services: Services | None = getattr(self._app.state, "services", None)
        if services is not None:
            await services.fanout.drain(CLOSE_GOING_AWAY, GOING_AWAY, SHUTDOWN_DRAIN_S)
        await super().shutdown(sockets)
