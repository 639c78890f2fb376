"""A `presence.watch` answers with each user's state as of its answer: a transition that
falls between its read and its subscription (whose report reached no watcher here) is
in the answer, not lost until the user's next one."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from app.domain.ports import Actor
from app.infra.db.queries import users as user_rows
from app.lifespan import Services
from tests.support import Api, new_user_id


def services_of(client: httpx.AsyncClient) -> Services:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    services: Services = transport.app.state.services  # type: ignore[attr-defined]
    return services


async def online_in_a_room_with_alice(services: Services, api: Api) -> tuple[str, str, str]:
    """Alice, and Bob who shares a room with her and is online on his phone."""
    alice, bob, bobs_phone = new_user_id("alice"), new_user_id("bob"), new_user_id("phone")
    await api.direct(alice, bob)
    assert await services.presence.connect(bob, bobs_phone, 5) == 1
    return alice, bob, bobs_phone


async def test_a_user_who_went_offline_before_the_subscription_is_answered_offline(
    client: httpx.AsyncClient, api: Api
) -> None:
    services = services_of(client)
    alice, bob, bobs_phone = await online_in_a_room_with_alice(services, api)
    left_at = datetime.now(UTC).replace(microsecond=0)
    subscribed_to: list[list[str]] = []

    async def follow(user_ids: list[str]) -> None:
        # Bob's phone leaves after the read, before the subscription is in place.
        assert await services.presence.disconnect(bob, bobs_phone)
        async with services.sessions() as session, session.begin():
            await user_rows.set_last_seen(session, bob, left_at)
        subscribed_to.append(user_ids)

    view = await services.presence_reads.watch(Actor(alice), [bob], follow)

    assert subscribed_to == [[bob]]
    assert [(s.user_id, s.online, s.last_seen) for s in view.states] == [(bob, False, left_at)]


async def test_the_answer_gives_the_versions_its_states_were_read_at(
    client: httpx.AsyncClient, api: Api
) -> None:
    services = services_of(client)
    alice, bob, bobs_phone = await online_in_a_room_with_alice(services, api)

    async def follow(user_ids: list[str]) -> None:
        pass

    view = await services.presence_reads.watch(Actor(alice), [bob], follow)

    now = await services.presence.snapshot([bob])
    assert [s.online for s in view.states] == [True]
    assert bob in now.versions
    assert view.versions == now.versions
    assert await services.presence.disconnect(bob, bobs_phone)
