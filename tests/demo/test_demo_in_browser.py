"""Two people chat in the browser demo: a private room, live messages, ticks that turn to
blue read ticks, typing, presence and last seen. Also takes the README's picture (see
`screenshot_path`)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cluster import Instance
from tests.support import auth, new_user_id, token_for

pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

from playwright.sync_api import Browser, BrowserContext, Page, expect

WAIT_MS = 10_000
HISTORY = 70  # messages in the long room: more than one page
PAGE = 50  # the demo's page size
UNREAD = 5
TYPING_LAPSE_MS = 6_000
VIEWPORT = {"width": 1000, "height": 560}


class Person:
    """One browser context (its own storage, its own socket) with the demo open."""

    def __init__(self, browser: Browser, base_url: str, name: str) -> None:
        self.name = name
        self.user_id = new_user_id(name.lower())
        self.context: BrowserContext = browser.new_context(
            viewport={"width": VIEWPORT["width"], "height": VIEWPORT["height"]},
            locale="en-GB",
            timezone_id="UTC",
        )
        self.context.set_default_timeout(WAIT_MS)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda msg: self.errors.append(msg.text) if msg.type == "error" else None,
        )
        self.page.on(
            "response",
            lambda r: self.errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )
        self.page.goto(f"{base_url}/demo/")

    def sign_in(self) -> None:
        page = self.page
        page.fill("#token", token_for(self.user_id, self.name))
        page.click("#signin-form button[type=submit]")
        expect(page.locator("#app")).to_be_visible()
        expect(page.locator("#me")).to_have_text(self.name)
        expect(page.locator("#status")).to_have_text("online")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser: Browser, server: Instance) -> Iterator[tuple[Person, Person]]:
    expect.set_options(timeout=WAIT_MS)
    alice = Person(browser, server.http, "Alice")
    bob = Person(browser, server.http, "Bob")
    try:
        yield alice, bob
    finally:
        alice.close()
        bob.close()


@pytest.mark.timeout(60)
def test_two_people_chat_in_the_demo(people: tuple[Person, Person], screenshot_path: Path) -> None:
    alice, bob = people
    alice.sign_in()
    bob.sign_in()

    # Alice opens a private chat with Bob; Bob is online and says so in the header.
    alice.page.fill("#direct-user", bob.user_id)
    alice.page.click("#new-direct button")
    expect(alice.page.locator("#room-title")).to_have_text("Bob")
    expect(alice.page.locator("#composer")).to_be_visible()
    expect(alice.page.locator("#room-presence")).to_have_text("online")

    # Alice sends; it shows at once with a tick.
    hello = "Hi Bob! Lunch at noon?"
    alice.page.fill("#body", hello)
    alice.page.press("#body", "Enter")
    mine = alice.page.locator("#messages li.mine", has_text=hello)
    expect(mine).to_have_count(1)
    ticks = mine.locator(".ticks")

    # Bob has not opened the room: it is listed with one unread, and his device
    # acknowledges delivery, so Alice sees grey double ticks (not yet read).
    bob_room = bob.page.locator("#rooms li", has_text="Alice")
    expect(bob_room).to_have_count(1)
    expect(bob_room.locator(".unread")).to_have_text("1")
    expect(bob_room.locator(".preview")).to_have_text(hello)
    expect(ticks).to_have_text("✓✓")
    expect(ticks).to_have_class("ticks")
    expect(ticks).to_have_attribute("title", "delivered")

    # Bob opens it and reads: his badge goes, Alice's ticks turn blue.
    bob_room.click()
    expect(bob.page.locator("#room-title")).to_have_text("Alice")
    expect(bob.page.locator("#messages li", has_text=hello)).to_have_count(1)
    expect(bob_room.locator(".unread")).to_have_count(0)
    expect(ticks).to_have_class("ticks read")
    expect(ticks).to_have_text("✓✓")
    expect(ticks).to_have_attribute("title", "read")
    expect(bob.page.locator("#room-presence")).to_have_text("online")

    # Bob types: Alice sees it; his message then replaces the indicator.
    reply = "Sure, see you there"
    bob.page.locator("#body").press_sequentially(reply, delay=20)
    expect(alice.page.locator("#typing")).to_have_text("Bob is typing…")
    bob.page.press("#body", "Enter")
    expect(alice.page.locator("#messages li:not(.mine)", has_text=reply)).to_have_count(1)
    # At once, not when the server's 6 s typing lapse comes round.
    expect(alice.page.locator("#typing")).to_have_text("", timeout=TYPING_LAPSE_MS // 2)
    # Bob's own copy shows it sent; Alice has it open, so it is read at once.
    bob_ticks = bob.page.locator("#messages li.mine", has_text=reply).locator(".ticks")
    expect(bob_ticks).to_have_class("ticks read")

    # Alice answers while Bob has the room open: read at once, blue ticks on both of hers.
    answer = "Great, the usual place."
    alice.page.fill("#body", answer)
    alice.page.press("#body", "Enter")
    expect(bob.page.locator("#messages li:not(.mine)", has_text=answer)).to_have_count(1)
    expect(alice.page.locator("#messages li.mine .ticks.read")).to_have_count(2)
    expect(bob.page.locator("#rooms li", has_text="Alice").locator(".unread")).to_have_count(0)

    # Bob starts another message, typing for a few seconds as a person does: the demo
    # refreshes `typing` every 2 s while keys come (the server drops a refresh within a
    # second of the last one), so Alice sees him typing again.
    bob.page.locator("#body").press_sequentially("On my way!", delay=300)
    expect(alice.page.locator("#typing")).to_have_text("Bob is typing…")

    # The picture for the README: the conversation, blue ticks, typing, Bob online.
    expect(alice.page.locator("#room-presence")).to_have_text("online")
    expect(alice.page.locator("#room-presence")).to_have_class("presence online")
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    alice.page.screenshot(path=str(screenshot_path))

    # Bob closes his page: Alice sees him go offline with a last-seen time, not typing.
    bob.close()
    expect(alice.page.locator("#room-presence")).to_have_text(re.compile(r"^last seen \S"))
    expect(alice.page.locator("#room-presence")).to_have_class("presence")
    expect(alice.page.locator("#typing")).to_have_text("", timeout=TYPING_LAPSE_MS // 2)

    assert alice.errors == [], alice.errors
    assert bob.errors == [], bob.errors


@pytest.mark.timeout(60)
def test_history_scrolls_back(browser: Browser, server: Instance) -> None:
    """A long room opens at its newest page; scrolling to the top loads the older one in
    place (the view does not jump), and a reader who was away sees the unread count."""
    expect.set_options(timeout=WAIT_MS)
    carol = Person(browser, server.http, "Carol")
    try:
        dave_id = new_user_id("dave")
        with httpx.Client(base_url=server.http, timeout=10) as http:
            # Carol's other device read all but the last UNREAD, so they are delivered
            # too: the sign-in's sync replays just those, and her list shows UNREAD unread.
            assert http.get("/v1/me", headers=auth(dave_id, "Dave")).status_code == 200
            assert http.get("/v1/me", headers=auth(carol.user_id, "Carol")).status_code == 200
            room = http.post(
                "/v1/rooms/direct", json={"user_id": carol.user_id}, headers=auth(dave_id)
            )
            assert room.status_code == 200, room.text
            room_id = room.json()["id"]
            for n in range(1, HISTORY + 1):
                sent = http.post(
                    f"/v1/rooms/{room_id}/messages",
                    json={"client_msg_id": str(uuid.uuid4()), "kind": "text", "body": f"m{n}"},
                    headers=auth(dave_id),
                )
                assert sent.status_code == 201, sent.text
            read = http.post(
                f"/v1/rooms/{room_id}/read",
                json={"seq": HISTORY - UNREAD},
                headers=auth(carol.user_id),
            )
            assert read.status_code in (200, 204), read.text

        carol.sign_in()
        entry = carol.page.locator("#rooms li", has_text="Dave")
        # Counted once: the messages the sign-in's sync replays are already in the
        # server's count. Checked after the replay has landed in the page's state.
        carol.page.wait_for_function(
            "last => [...state.messages.values()].some((room) => room.has(last))",
            arg=HISTORY,
        )
        expect(entry.locator(".unread")).to_have_text(str(UNREAD))
        expect(entry.locator(".preview")).to_have_text(f"m{HISTORY}")
        entry.click()
        messages = carol.page.locator("#messages li")
        expect(messages).to_have_count(PAGE)
        expect(messages.last).to_have_attribute("data-seq", str(HISTORY))
        expect(messages.first).to_have_attribute("data-seq", str(HISTORY - PAGE + 1))
        expect(entry.locator(".unread")).to_have_count(0)

        # Scroll to the top: the older page arrives above what was on screen.
        carol.page.locator("#messages").evaluate("list => { list.scrollTop = 0; }")
        expect(messages).to_have_count(HISTORY)
        expect(messages.first).to_have_attribute("data-seq", "1")
        expect(messages.first).to_contain_text("m1")
        first_of_old_page = carol.page.locator(f"#messages li[data-seq='{HISTORY - PAGE + 1}']")
        expect(first_of_old_page).to_be_in_viewport()
        assert carol.errors == [], carol.errors
    finally:
        carol.close()
