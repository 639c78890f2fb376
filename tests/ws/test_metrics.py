"""/metrics after real traffic: the operator's figures move with what the instances did."""

from __future__ import annotations

import uuid

import httpx

from tests.cluster import Client, Instance, metric_total
from tests.support import auth, new_user_id

FIGURES = (
    "chat_ws_connections",
    "chat_ws_users",
    "chat_messages_sent_total",
    "chat_frames_fanned_out_total",
    "chat_fanout_latency_seconds_count",
    "chat_ws_rate_limited_total",
    "chat_presence_sweeps_total",
    "chat_presence_dead_connections_total",
    "chat_store_errors_total",
    "chat_http_requests_total",
    "chat_http_request_duration_seconds_count",
)


async def _metrics(instance: Instance) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{instance.http}/metrics")
    assert response.status_code == 200
    return response.text


async def test_metrics_count_connections_messages_and_cross_instance_fanout(
    a: Instance, b: Instance
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    async with httpx.AsyncClient() as http:
        room = (
            await http.post(
                f"{a.http}/v1/rooms", json={"name": "m", "member_ids": [bob]}, headers=auth(alice)
            )
        ).json()
    before_a, before_b = await _metrics(a), await _metrics(b)
    sender = await Client.open(a.ws, alice)
    receiver = await Client.open(b.ws, bob)
    for _ in range(3):
        await sender.request(
            {"type": "send", "room_id": room["id"], "client_msg_id": str(uuid.uuid4()), "body": "x"}
        )
    for _ in range(3):
        await receiver.next_of("message")
    after_a, after_b = await _metrics(a), await _metrics(b)

    for name in FIGURES:
        assert metric_total(after_a, name) is not None, name
        assert metric_total(after_b, name) is not None, name
    assert (metric_total(after_a, "chat_ws_connections") or 0) >= 1
    assert (metric_total(after_b, "chat_ws_users") or 0) >= 1

    def grew(before: str, after: str, name: str) -> float:
        return (metric_total(after, name) or 0) - (metric_total(before, name) or 0)

    assert grew(before_a, after_a, "chat_messages_sent_total") >= 3
    assert grew(before_b, after_b, "chat_frames_fanned_out_total") >= 3
    assert grew(before_b, after_b, "chat_fanout_latency_seconds_count") >= 3
    await sender.close()
    await receiver.close()
