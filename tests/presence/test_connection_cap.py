"""Connections per user are capped (here at 2), across instances, with close code 4429."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.cluster import Client, Instance, Sockets
from tests.presence.conftest import PresenceCluster
from tests.support import new_user_id

CAP = 2


@pytest.fixture(scope="module")
def capped(presence_cluster: PresenceCluster) -> Instance:
    return presence_cluster.launch("capped", max_connections_per_user=str(CAP))


async def _refused_code(instance: Instance, user_id: str) -> int | None:
    """The close code of a connection the server refuses; None if it was admitted."""
    try:
        client = await Client.open(instance.ws, user_id)
    except ConnectionClosed as exc:
        closed = exc
    else:
        await client.close()
        return None
    assert closed.rcvd is not None, closed
    return closed.rcvd.code


async def test_connection_over_the_cap_is_closed_with_4429_and_the_others_keep_working(
    capped: Instance, sockets: Sockets
) -> None:
    user = new_user_id("busy")
    first, second = await sockets.open(capped, user), await sockets.open(capped, user)

    assert await _refused_code(capped, user) == 4429

    for device in (first, second):
        ack = await device.request({"type": "presence.watch", "user_ids": [user]})
        assert ack["presence"][0]["online"] is True


async def test_a_connection_is_admitted_again_once_one_closes(
    capped: Instance, sockets: Sockets
) -> None:
    user = new_user_id("busy")
    first = await sockets.open(capped, user)
    await sockets.open(capped, user)
    assert await _refused_code(capped, user) == 4429

    await first.close()
    # The server unregisters the closed connection right after the closing handshake.
    deadline = time.monotonic() + 1.0
    while (code := await _refused_code(capped, user)) is not None:
        assert code == 4429
        assert time.monotonic() < deadline, "no connection admitted after one closed"
        await asyncio.sleep(0.05)


async def test_the_cap_counts_connections_on_every_instance(
    capped: Instance, p2: Instance, sockets: Sockets
) -> None:
    user = new_user_id("busy")
    for _ in range(CAP):
        await sockets.open(p2, user)

    assert await _refused_code(capped, user) == 4429
