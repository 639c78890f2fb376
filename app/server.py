"""uvicorn, with a shutdown that closes WebSockets the way the contract says.

On SIGTERM uvicorn stops listening and then closes open WebSockets with 1012. Before it
does, every socket here is drained (the frame in hand is answered) and closed with 1001,
"going away": clients reconnect, to another instance behind the load balancer, and sync.
"""

from __future__ import annotations

import socket

import uvicorn
from fastapi import FastAPI

from app.lifespan import SHUTDOWN_DRAIN_S, Services

CLOSE_GOING_AWAY = 1001


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # stop accepting first: nothing new arrives while draining
        services: Services | None = getattr(self._app.state, "services", None)
        if services is not None:
            await services.fanout.drain(CLOSE_GOING_AWAY, "server shutting down", SHUTDOWN_DRAIN_S)
        await super().shutdown(sockets)
