"""Which subscriptions Redis has confirmed: one counts once every (un)subscribe of it has
been answered and it is still wanted, and a caller can wait for that."""

from __future__ import annotations

import asyncio

from app.infra.bus.confirmations import Confirmations


def test_a_subscription_counts_once_redis_has_answered_every_request_for_it() -> None:
    confirmations = Confirmations()
    confirmations.asked(["a"])
    confirmations.asked(["a"])  # unsubscribed and subscribed again before any answer

    confirmations.answered("a", followed=True)
    assert "a" not in confirmations
    confirmations.answered("a", followed=True)
    assert "a" in confirmations


def test_an_answer_for_a_channel_no_longer_followed_confirms_nothing() -> None:
    confirmations = Confirmations()
    confirmations.asked(["a"])

    confirmations.answered("a", followed=False)

    assert "a" not in confirmations


async def test_a_wait_ends_when_the_last_of_its_channels_is_confirmed() -> None:
    confirmations = Confirmations()
    confirmations.asked(["a", "b"])
    waiting = asyncio.create_task(confirmations.until(["a", "b"], timeout_s=5))

    confirmations.answered("a", followed=True)
    await asyncio.sleep(0)
    assert not waiting.done()
    confirmations.answered("b", followed=True)

    assert await asyncio.wait_for(waiting, 5)


async def test_a_wait_gives_up_past_its_timeout() -> None:
    confirmations = Confirmations()
    confirmations.asked(["a"])

    assert not await confirmations.until(["a"], timeout_s=0.05)


async def test_a_wait_for_what_is_confirmed_already_returns_at_once() -> None:
    confirmations = Confirmations()
    confirmations.asked(["a"])
    confirmations.answered("a", followed=True)

    assert await confirmations.until(["a"], timeout_s=0)


async def test_every_wait_for_a_channel_ends_when_it_is_confirmed() -> None:
    confirmations = Confirmations()
    confirmations.asked(["a"])
    first = asyncio.create_task(confirmations.until(["a"], timeout_s=5))
    second = asyncio.create_task(confirmations.until(["a", "b"], timeout_s=5))
    await asyncio.sleep(0)

    confirmations.answered("a", followed=True)
    confirmations.answered("b", followed=True)

    assert list(await asyncio.wait_for(asyncio.gather(first, second), 5)) == [True, True]
