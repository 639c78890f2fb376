"""A `presence.watch` answers with each user's state as of its answer: the connection is
subscribed to the users' reports before they are read, so a transition while the
subscription was being made is in the answer, not lost until the user's next one; and a
watch the read refuses leaves the connection following what it followed before."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import httpx
import pytest

from app.domain.ports import Actor
from app.errors import Forbidden
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


async def test_a_user_who_went_offline_while_the_subscription_was_made_is_answered_offline(
    client: httpx.AsyncClient, api: Api
) -> None:
    services = services_of(client)
    alice, bob, bobs_phone = await online_in_a_room_with_alice(services, api)
    left_at = datetime.now(UTC).replace(microsecond=0)
    subscribed_to: list[list[str]] = []

    async def follow(user_ids: Sequence[str]) -> None:
        # Bob's phone leaves before the subscription is in force: no report reaches Alice.
        assert await services.presence.disconnect(bob, bobs_phone)
        async with services.sessions() as session, session.begin():
            await user_rows.set_last_seen(session, bob, left_at)
        subscribed_to.append(list(user_ids))

    view = await services.presence_reads.watch(Actor(alice), [bob], follow, [])

    assert subscribed_to == [[bob]]
    assert [(s.user_id, s.online, s.last_seen) for s in view.states] == [(bob, False, left_at)]


async def test_the_answer_gives_the_versions_its_states_were_read_at(
    client: httpx.AsyncClient, api: Api
) -> None:
    services = services_of(client)
    alice, bob, bobs_phone = await online_in_a_room_with_alice(services, api)

    async def follow(user_ids: Sequence[str]) -> None:
        pass

    view = await services.presence_reads.watch(Actor(alice), [bob], follow, [])

    now = await services.presence.snapshot([bob])
    assert [s.online for s in view.states] == [True]
    assert bob in now.versions
    assert view.versions == now.versions
    assert await services.presence.disconnect(bob, bobs_phone)


async def test_a_refused_watch_follows_the_users_followed_before_again(
    client: httpx.AsyncClient, api: Api
) -> None:
    services = services_of(client)
    alice, bob, _ = await online_in_a_room_with_alice(services, api)
    stranger = new_user_id("stranger")  # shares no room with Alice
    followed: list[list[str]] = []

    async def follow(user_ids: Sequence[str]) -> None:
        followed.append(list(user_ids))

    with pytest.raises(Forbidden):
        await services.presence_reads.watch(Actor(alice), [bob, stranger], follow, [bob])

    assert followed == [[bob, stranger], [bob]]
