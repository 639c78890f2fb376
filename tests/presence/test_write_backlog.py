"""A peer that stops reading while frames are still on their way to it is found dead too.

The keepalive closes it with 1011 when a ping goes unanswered, but that close frame sits
behind the frames the peer never took, and a polite close waits for them to be sent:
without a cut the connection would stay half-closed and its user online for good.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson

from tests.cluster import (
    Instance,
    Sockets,
    log_events,
    new_group,
    open_unreading,
    parse_time,
)
from tests.cluster import send_frame as send_message
from tests.presence.conftest import DETECTION_S, HEARTBEAT_S
from tests.support import new_user_id

# A room's history, sent within the default rate limit (a burst of 20 frames), that the
# peer asks for again and again without reading: more than the kernel buffers of both
# ends hold, so the rest waits in the server's transport.
HISTORY = 18
SYNCS = 8
BODY = "b" * 3900


async def test_a_peer_that_stops_reading_with_frames_pending_goes_offline_in_time(
    p1: Instance, p2: Instance, sockets: Sockets
) -> None:
    stuck, sender, viewer = new_user_id("unread"), new_user_id("sender"), new_user_id("viewer")
    # The viewer shares a room with the stuck user (to see its presence), not the one the
    # messages go to: a test client that is not reading would fall behind too.
    await new_group(p1, viewer, stuck)
    room = await new_group(p1, sender, stuck)
    watcher = await sockets.open(p2, viewer)
    ack = await watcher.request({"type": "presence.watch", "user_ids": [stuck]})
    assert [p["user_id"] for p in ack["presence"]] == [stuck]
    writer = await sockets.open(p1, sender)
    for _ in range(HISTORY):
        await writer.request(send_message(room["id"], BODY))
    ws = await open_unreading(p1, stuck, pings=False)
    try:
        assert '"hello"' in str(await ws.recv())
        await watcher.wait(lambda f: f["type"] == "presence" and f["online"] is True)
        stopped_at, started = datetime.now(UTC), time.monotonic()
        for n in range(SYNCS):
            await ws.send(orjson.dumps({"type": "sync", "id": f"s{n}", "cursors": {}}).decode())
        offline = await watcher.wait(
            lambda f: f["type"] == "presence" and f["user_id"] == stuck and not f["online"],
            timeout_s=DETECTION_S + 1.0,
        )
        detected_s = time.monotonic() - started
        port = ws.local_address[1]
    finally:
        ws.transport.abort()

    print(f"unreading peer with a backlog: offline after {detected_s:.2f}s")
    # It stopped answering when frames began to pile up: a ping later, and a ping
    # timeout after that, it is cut off.
    assert detected_s <= DETECTION_S, detected_s
    # The case at hand: it was cut off with frames still waiting to be written.
    cut = [e for e in log_events(p1, "ws_keepalive_timeout") if e["client"][1] == port]
    assert cut, "not cut off by the keepalive"
    assert cut[0]["write_backlog"] > 0, cut
    last_seen = parse_time(offline["last_seen"])
    assert abs(last_seen - stopped_at) <= timedelta(seconds=HEARTBEAT_S * 1.5), (
        last_seen,
        stopped_at,
    )
