"""A connection that vanishes without a close frame is found dead within 3 x heartbeat_s,
and its user's last_seen is their last sign of life, not the moment it was found out."""

from __future__ import annotations

import contextlib
import time
from datetime import UTC, datetime, timedelta

from websockets.asyncio.client import connect

from tests.cluster import (
    FRAME_TIMEOUT_S,
    Client,
    Instance,
    SilentProxy,
    Sockets,
    new_group,
    parse_time,
    rest,
)
from tests.presence.conftest import DETECTION_S
from tests.support import auth, new_user_id

# How far last_seen may be from the moment the peer went quiet: the server hears of a
# silent peer through its pings, one heartbeat apart.
LAST_SEEN_TOLERANCE = timedelta(seconds=1.5)


async def _watching(watcher: Client, user_id: str) -> None:
    ack = await watcher.request({"type": "presence.watch", "user_ids": [user_id]})
    assert [p["user_id"] for p in ack["presence"]] == [user_id]


async def test_dropped_tcp_connection_goes_offline_with_last_seen_at_the_drop(
    p1: Instance, p2: Instance, sockets: Sockets
) -> None:
    user, viewer = new_user_id("dropper"), new_user_id("viewer")
    await new_group(p1, viewer, user)
    watcher = await sockets.open(p2, viewer)
    await _watching(watcher, user)
    ws = await connect(p1.ws, additional_headers=auth(user), open_timeout=FRAME_TIMEOUT_S)
    try:
        assert '"hello"' in str(await ws.recv())
        await watcher.wait(lambda f: f["type"] == "presence" and f["online"] is True)

        ws.transport.abort()  # the TCP connection ends with no close frame
        dropped_at, started = datetime.now(UTC), time.monotonic()
        offline = await watcher.wait(
            lambda f: f["type"] == "presence" and f["user_id"] == user and not f["online"],
            timeout_s=DETECTION_S,
        )
        detected_s = time.monotonic() - started
    finally:
        with contextlib.suppress(Exception):
            await ws.close()

    print(f"dropped TCP: offline after {detected_s:.2f}s")
    last_seen = parse_time(offline["last_seen"])
    assert abs(last_seen - dropped_at) <= LAST_SEEN_TOLERANCE, (last_seen, dropped_at)
    described = (await rest(p1, viewer, "GET", f"/v1/users/{user}")).json()
    assert described["online"] is False
    assert parse_time(described["last_seen"]) == last_seen


async def test_silent_peer_is_found_by_keepalive_with_last_seen_when_it_went_quiet(
    p1: Instance, p2: Instance, sockets: Sockets
) -> None:
    user, viewer = new_user_id("silent"), new_user_id("viewer")
    await new_group(p1, viewer, user)
    watcher = await sockets.open(p2, viewer)
    await _watching(watcher, user)
    proxy = SilentProxy(p1.port)
    port = await proxy.start()
    try:
        # No client-side pings: only the server's keepalive may notice.
        device = await Client.open(f"ws://127.0.0.1:{port}/v1/ws", user, ping_interval=None)
        await watcher.wait(lambda f: f["type"] == "presence" and f["online"] is True)
        # Alive for a while (answering the server's pings), then the network goes quiet.
        await device.request({"type": "presence.watch", "user_ids": [user]})
        await watcher.drain(quiet_s=1.5)
        proxy.silence()
        silent_at, started = datetime.now(UTC), time.monotonic()
        offline = await watcher.wait(
            lambda f: f["type"] == "presence" and f["user_id"] == user and not f["online"],
            timeout_s=DETECTION_S,
        )
        detected_at, detected_s = datetime.now(UTC), time.monotonic() - started
    finally:
        await proxy.close()

    print(f"silent peer: offline after {detected_s:.2f}s")
    last_seen = parse_time(offline["last_seen"])
    assert abs(last_seen - silent_at) <= LAST_SEEN_TOLERANCE, (last_seen, silent_at)
    # The moment it went quiet, not the moment the server found out (a ping timeout later).
    assert last_seen <= detected_at - timedelta(seconds=0.5), (last_seen, detected_at)
