"""Probes and metrics for operators."""

from __future__ import annotations

import re

import httpx

from tests.support import Api, new_user_id


async def test_healthz_is_ok(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz")
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"


async def test_readyz_reports_postgres_and_redis_up(client: httpx.AsyncClient) -> None:
    resp = await client.get("/readyz")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["postgres"] is True
    assert body["redis"] is True


async def test_metrics_is_prometheus_text(client: httpx.AsyncClient) -> None:
    resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert "# TYPE chat_http_requests_total counter" in resp.text


async def test_request_metrics_are_labelled_by_route_template(
    api: Api, client: httpx.AsyncClient
) -> None:
    alice, bob = new_user_id("alice"), new_user_id("bob")
    room = await api.group(alice, bob)
    await api.send(alice, room["id"], "counted")
    resp = await api.call(bob, "GET", f"/v1/rooms/{room['id']}/messages")
    assert resp.status_code == 200
    text = (await client.get("/metrics")).text
    lines = [line for line in text.splitlines() if line.startswith("chat_http_requests_total{")]
    template = 'route="/v1/rooms/{room_id}/messages"'
    posts = [line for line in lines if template in line and 'method="POST"' in line]
    gets = [line for line in lines if template in line and 'method="GET"' in line]
    assert posts, lines
    assert gets, lines
    assert all(float(line.rsplit(" ", 1)[1]) >= 1 for line in posts + gets)
    assert not any(room["id"] in line for line in text.splitlines())


async def test_unmatched_paths_do_not_create_a_series_per_path(
    client: httpx.AsyncClient,
) -> None:
    probe = f"/v1/probe-{new_user_id()}"
    await client.get(probe)
    text = (await client.get("/metrics")).text
    assert probe not in text
    assert re.search(r'chat_http_requests_total\{[^}]*route="unmatched"', text), text[:2000]
