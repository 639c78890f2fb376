"""Malformed frames by the ten thousand, over real WebSocket connections to a real instance.

Hypothesis builds batches of bad frames from several families (random JSON values, real
frame types with one field wrong, unknown types, deep nesting, NaN and Infinity literals,
duplicate keys, lone surrogates, binary frames, broken JSON text); a fixed corpus adds
hand-picked nasty ones (tests/hostile/nasty_frames.jsonl). Each batch is pipelined on one
of a few connections and ended with a `ping`: every bad frame must be answered, in order,
by one `error` with the contract code (and the frame's `id` when it had a usable one), and
the `pong` proves the connection is still serving. Only invalid UTF-8 in a text frame and a
frame over the size limit close the connection (1007, 1009), as the protocol requires.

The fuzzing users share a real room with seeded messages, so a malformed frame that
slipped through validation would show: as an ack, as a stored row or a moved watermark.
The last tests of the module check the aftermath: nothing stored, nothing unhandled in
the instance's log, the process alive and ready.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.cluster import FRAME_TIMEOUT_S, Fleet, Instance, alive, unhandled_errors
from tests.support import Stores, auth, new_user_id

# The client frame types of the contract (PROTOCOL.md, "Client to server").
KNOWN_TYPES = frozenset(
    {"auth", "send", "sync", "delivered", "read", "typing", "presence.watch", "ping"}
)
INVALID_FRAME, UNKNOWN_TYPE, VALIDATION_FAILED = (
    "INVALID_FRAME",
    "UNKNOWN_TYPE",
    "VALIDATION_FAILED",
)
MAX_SEQ = 2**53 - 1
MAX_FRAME_BYTES = 65536  # the default CHAT_MAX_FRAME_BYTES, kept by the fuzzed instance

FUZZERS = 4
SEED_MESSAGES = 3
BATCH = 50
EXAMPLES = 210  # x BATCH frames: 10,500 generated frames a run
MIN_FRAMES = 10_000
TIME_BUDGET_S = 60.0
CORPUS = Path(__file__).with_name("nasty_frames.jsonl")
MARK = "@@HOLE@@"  # a string value later replaced by raw, non-JSON-encodable text


@dataclass(frozen=True)
class Bad:
    """One malformed frame and the answer it must get."""

    family: str
    data: str | bytes  # bytes: sent as a binary frame
    code: str
    frame_id: str | None = None
    check_id: bool = False

    def show(self) -> str:
        return f"{self.family}: {self.data[:300]!r}"


@dataclass
class Target:
    """The fuzzed instance, the fuzzing users' room and their open connections."""

    instance: Instance
    room_id: str
    seeder: str
    users: list[str]
    sockets: list[ClientConnection] = field(default_factory=list)


def open_socket(instance: Instance, user_id: str) -> ClientConnection:
    ws = connect(
        instance.ws,
        additional_headers=auth(user_id),
        open_timeout=FRAME_TIMEOUT_S,
        close_timeout=FRAME_TIMEOUT_S,
        proxy=None,
        compression=None,
        # No client keepalive: its thread draws each ping's payload from the global
        # `random`, and one drawn while Hypothesis builds a batch fails the test as a
        # strategy using `random` (on a loaded machine the test outlasts the interval).
        ping_interval=None,
        legacy=True,  # a plain connection, closed by the caller
    )
    hello = orjson.loads(ws.recv(timeout=FRAME_TIMEOUT_S))
    assert hello["type"] == "hello", hello
    return ws


@pytest.fixture(scope="module")
def target(fleet: Fleet) -> Iterator[Target]:
    # A rate limit far above what the fuzzer sends: every frame reaches the parser.
    instance = fleet.start(fuzz={"frames_per_s": "100000"})["fuzz"]
    seeder = new_user_id("seed")
    users = [new_user_id("fuzz") for _ in range(FUZZERS)]
    with httpx.Client(base_url=instance.http, timeout=FRAME_TIMEOUT_S) as http:
        resp = http.post(
            "/v1/rooms", json={"name": "fuzz", "member_ids": users}, headers=auth(seeder)
        )
        assert resp.status_code == 201, resp.text
        room_id = resp.json()["id"]
        for n in range(SEED_MESSAGES):
            body = {"client_msg_id": str(uuid.uuid4()), "kind": "text", "body": f"seed {n}"}
            resp = http.post(f"/v1/rooms/{room_id}/messages", json=body, headers=auth(seeder))
            assert resp.status_code == 201, resp.text
    found = Target(instance, room_id, seeder, users)
    try:
        for user in users:
            found.sockets.append(open_socket(instance, user))
        yield found
    finally:
        for ws in found.sockets:
            ws.close()


def exchange(ws: ClientConnection, frames: list[Bad], tag: str) -> list[dict[str, Any]]:
    """Pipeline the frames then a `ping`; every answer received before its `pong`.

    Pushes may come in between (a `resync` when any instance on the shared Redis lost
    its subscription, say): they are not answers, and are left out."""
    for bad in frames:
        ws.send(bad.data)
    ws.send(orjson.dumps({"type": "ping", "id": tag}).decode())
    replies: list[dict[str, Any]] = []
    deadline = time.monotonic() + FRAME_TIMEOUT_S
    while True:
        reply = orjson.loads(ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
        if reply == {"type": "pong", "id": tag}:
            return replies
        if reply.get("type") in ("error", "ack"):
            replies.append(reply)


def assert_answered(frames: list[Bad], replies: list[dict[str, Any]]) -> None:
    """One `error` per frame, in order, with the expected code (and id where known)."""
    assert len(replies) == len(frames), [r for r in replies if r.get("type") != "error"]
    for bad, reply in zip(frames, replies, strict=True):
        assert reply["type"] == "error", (bad.show(), reply)
        assert reply["code"] == bad.code, (bad.show(), reply)
        assert isinstance(reply["message"], str), reply
        if bad.check_id:
            assert reply.get("id") == bad.frame_id, (bad.show(), reply)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def usable_id(value: Any) -> str | None:
    """The id an error must echo: the frame's `id` when it is a string of at most 64."""
    return value if isinstance(value, str) and len(value) <= 64 else None


# ---- strategies ------------------------------------------------------------------------

ints = st.integers(-(2**63), 2**63 - 1)  # what a 64-bit JSON encoder writes
scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=12,
)
containers = st.lists(values, max_size=3) | st.dictionaries(st.text(max_size=8), values, max_size=3)
# Values pydantic's lax mode can never read as a number, a bool or a UUID.
wordy = st.text(max_size=16).map(lambda s: "x" + s)
fractions = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
with_nul = st.text(max_size=10).map(lambda s: s + "\x00")


def not_a_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return True
    return False


# For each kind of field, values that are wrong for it whatever the parser's leniency.
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "uuid": st.one_of(
        ints,
        fractions,
        st.booleans(),
        st.none(),
        containers,
        st.text(max_size=40).filter(not_a_uuid),
    ),
    "seq": st.one_of(
        st.integers(-(2**63), -1),
        st.integers(MAX_SEQ + 1, 2**63 - 1),
        fractions,
        st.floats(min_value=1e16, allow_infinity=False),
        wordy,
        st.none(),
        containers,
    ),
    "limit": st.one_of(
        st.integers(-(2**63), 0),
        st.integers(501, 2**63 - 1),
        fractions,
        wordy,
        st.none(),
        containers,
    ),
    "bool": st.one_of(
        ints.filter(lambda i: i not in (0, 1)), fractions, wordy, st.none(), containers
    ),
    "token": st.one_of(
        ints,
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
        containers,
        st.just("t" * 16385),
    ),
    "body": st.one_of(
        ints,
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        containers,
        with_nul,
    ),
    "kind": st.one_of(
        st.text(max_size=10).filter(lambda s: s not in ("text", "image", "file")),
        ints,
        st.booleans(),
        st.none(),
        containers,
    ),
    "attachment": st.one_of(
        ints,
        st.booleans(),
        st.text(max_size=10),
        st.lists(values, max_size=3),
        st.dictionaries(st.text(max_size=8), values, max_size=3),
    ),
    "user_ids": st.one_of(
        ints,
        st.booleans(),
        st.text(max_size=10),
        st.none(),
        st.dictionaries(st.text(max_size=8), values, max_size=3),
        st.lists(
            st.one_of(
                st.just(""),
                st.text(min_size=65, max_size=80),
                ints,
                st.none(),
                st.booleans(),
                containers,
                with_nul,
            ),
            min_size=1,
            max_size=3,
        ),
        st.just(["u"] * 501),
    ),
    "id": st.one_of(
        ints,
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        containers,
        st.text(min_size=65, max_size=100),
    ),
}
# Near misses of the real types: another case, padding, a NUL, a suffix, a prefix.
NEAR_TYPES = sorted(
    {
        variant
        for k in KNOWN_TYPES
        for variant in (
            k.upper(),
            k.title(),
            f" {k}",
            f"{k} ",
            f"{k}\x00",
            f"{k}.",
            k[:-1],
            f"{k}s",
        )
    }
    - KNOWN_TYPES
)
FIELDS: dict[str, dict[str, str]] = {
    "auth": {"token": "token"},
    "send": {
        "room_id": "uuid",
        "client_msg_id": "uuid",
        "kind": "kind",
        "body": "body",
        "attachment": "attachment",
    },
    "sync": {"cursors": "cursors", "limit": "limit"},
    "delivered": {"room_id": "uuid", "seq": "seq"},
    "read": {"room_id": "uuid", "seq": "seq"},
    "typing": {"room_id": "uuid", "active": "bool"},
    "presence.watch": {"user_ids": "user_ids"},
    "ping": {},
}
REQUIRED: dict[str, list[str]] = {
    "auth": ["token"],
    "send": ["room_id", "client_msg_id"],
    "delivered": ["room_id", "seq"],
    "read": ["room_id", "seq"],
    "typing": ["room_id", "active"],
    "presence.watch": ["user_ids"],
}


def base_frame(kind: str, room_id: str, peer: str) -> dict[str, Any]:
    """A valid frame of this type for the fuzzing user's room (every seq is a real one)."""
    frames: dict[str, dict[str, Any]] = {
        "auth": {"token": "a.b.c"},
        "send": {
            "room_id": room_id,
            "client_msg_id": str(uuid.uuid4()),
            "kind": "text",
            "body": "fuzz",
        },
        "sync": {"cursors": {room_id: 0}, "limit": 10},
        "delivered": {"room_id": room_id, "seq": SEED_MESSAGES},
        "read": {"room_id": room_id, "seq": SEED_MESSAGES},
        "typing": {"room_id": room_id, "active": True},
        "presence.watch": {"user_ids": [peer]},
        "ping": {},
    }
    return {"type": kind, **frames[kind]}


def bad_frames(room_id: str, peer: str) -> st.SearchStrategy[Bad]:
    """Every family of malformed frame, for a fuzzing user of this room."""
    frame_types = st.sampled_from(sorted(KNOWN_TYPES))
    wrong_cursors = st.one_of(
        ints,
        st.booleans(),
        st.text(max_size=10),
        st.none(),
        st.lists(values, max_size=3),
        st.dictionaries(st.text(max_size=20).filter(not_a_uuid), values, min_size=1, max_size=2),
        WRONG["seq"].map(lambda seq: {room_id: seq}),
    )

    def wrong(kind: str) -> st.SearchStrategy[Any]:
        return wrong_cursors if kind == "cursors" else WRONG[kind]

    @st.composite
    def random_values(draw: st.DrawFn) -> Bad:
        value = draw(values | st.dictionaries(st.text(max_size=8), values, max_size=5))
        if not isinstance(value, dict):
            return Bad("random value", dumps(value), INVALID_FRAME, None, check_id=True)
        value.pop("type", None)
        if draw(st.booleans()):  # a `type` that is not a string
            value["type"] = draw(st.one_of(st.none(), st.booleans(), ints, containers))
        if draw(st.booleans()):
            value["id"] = draw(st.text(max_size=64))
        expected = usable_id(value.get("id"))
        return Bad("random object", dumps(value), INVALID_FRAME, expected, check_id=True)

    @st.composite
    def wrong_fields(draw: st.DrawFn) -> Bad:
        kind = draw(frame_types)
        frame = base_frame(kind, room_id, peer)
        fields = FIELDS[kind]
        mutations = ["extra", "id"] + [f"set:{f}" for f in fields]
        mutations += [f"drop:{f}" for f in REQUIRED.get(kind, [])]
        mutation = draw(st.sampled_from(mutations))
        frame_id = draw(st.none() | st.text(max_size=64))
        if frame_id is not None:
            frame["id"] = frame_id
        if mutation == "id":
            frame["id"] = draw(WRONG["id"])
            frame_id = None
        elif mutation == "extra":
            known = {"type", "id", *fields}
            key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in known))
            frame[key] = draw(values)
        elif mutation.startswith("set:"):
            name = mutation[4:]
            frame[name] = draw(wrong(fields[name]))
        else:
            del frame[mutation[5:]]
        order = draw(st.permutations(list(frame)))
        text = dumps({key: frame[key] for key in order})
        return Bad(f"{kind} {mutation}", text, VALIDATION_FAILED, frame_id, check_id=True)

    @st.composite
    def unknown_types(draw: st.DrawFn) -> Bad:
        kind = draw(st.one_of(st.text(max_size=30), st.sampled_from(NEAR_TYPES)))
        if kind in KNOWN_TYPES:
            kind += "?"
        frame: dict[str, Any] = {"type": kind}
        extra = st.text(max_size=8).filter(lambda k: k not in ("type", "id"))
        frame.update(draw(st.dictionaries(extra, values, max_size=3)))
        frame_id = draw(st.none() | st.text(max_size=64))
        if frame_id is not None:
            frame["id"] = frame_id
        return Bad("unknown type", dumps(frame), UNKNOWN_TYPE, frame_id, check_id=True)

    @st.composite
    def deep_nesting(draw: st.DrawFn) -> Bad:
        opener, inner, closer = draw(
            st.sampled_from([("[", "", "]"), ('{"a":', "1", "}"), ('[{"k":', "0", "}]")])
        )
        fits = (MAX_FRAME_BYTES - 100) // (len(opener) + len(closer))
        depth = draw(st.integers(min_value=300, max_value=min(20_000, fits)))
        nested = opener * depth + inner + closer * depth
        text = f'{{"type":"ping","x":{nested}}}' if draw(st.booleans()) else nested
        return Bad(f"nesting {depth}", text, INVALID_FRAME)

    @st.composite
    def non_finite(draw: st.DrawFn) -> Bad:
        frame = base_frame(draw(frame_types), room_id, peer)
        key = draw(st.sampled_from([*frame, "id", "x"]))
        frame[key] = MARK
        literal = draw(
            st.sampled_from(
                ["NaN", "Infinity", "-Infinity", "+Infinity", "nan", "inf", "-inf", "-NaN", "Inf"]
            )
        )
        return Bad("non-finite", dumps(frame).replace(dumps(MARK), literal), INVALID_FRAME)

    @st.composite
    def duplicate_keys(draw: st.DrawFn) -> Bad:
        pairs = list(base_frame(draw(frame_types), room_id, peer).items())
        if draw(st.booleans()):
            pairs.append(("id", draw(st.text(max_size=64))))
        key, value = pairs[draw(st.integers(0, len(pairs) - 1))]
        again = dumps(key)
        if draw(st.booleans()):  # the same key, one character written as a \u escape
            at = draw(st.integers(0, len(key) - 1))
            again = f'"{key[:at]}\\u{ord(key[at]):04x}{key[at + 1 :]}"'
        space = st.sampled_from(["", " ", "\t", "\n", "\r\n  "])
        items = [f"{dumps(k)}{draw(space)}:{dumps(v)}" for k, v in pairs]
        duplicate = f"{again}{draw(space)}:{dumps(draw(st.just(value) | values))}"
        items.insert(draw(st.integers(0, len(items))), duplicate)
        return Bad("duplicate key", "{" + ",".join(items) + "}", INVALID_FRAME)

    @st.composite
    def lone_surrogates(draw: st.DrawFn) -> Bad:
        frame = base_frame(draw(frame_types), room_id, peer)
        point = draw(st.integers(0xD800, 0xDFFF))
        escape = f"\\u{point:04x}" if draw(st.booleans()) else f"\\u{point:04X}"
        if point < 0xDC00:  # a high surrogate with no low one after it
            escape += draw(st.sampled_from(["", "x", "\\u0041", "\\ud800", "\\n"]))
        prefix = draw(st.text(alphabet="ab ", max_size=3))
        if draw(st.booleans()):
            frame[draw(st.sampled_from([*frame, "id"]))] = MARK
            text = dumps(frame).replace(dumps(MARK), f'"{prefix}{escape}"')
        else:  # in a key
            frame[MARK] = 1
            text = dumps(frame).replace(dumps(MARK), f'"{prefix}{escape}"')
        return Bad("lone surrogate", text, INVALID_FRAME)

    @st.composite
    def binary(draw: st.DrawFn) -> Bad:
        data = draw(
            st.binary(max_size=200)
            | frame_types.map(lambda k: dumps(base_frame(k, room_id, peer)).encode())
        )
        return Bad("binary", data, INVALID_FRAME, None, check_id=True)

    def typed_object(text: str) -> bool:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return False
        return isinstance(value, dict) and isinstance(value.get("type"), str)

    @st.composite
    def broken_text(draw: st.DrawFn) -> Bad:
        if draw(st.booleans()):
            text = draw(st.text(max_size=60).filter(lambda t: not typed_object(t)))
            return Bad("garbage text", text, INVALID_FRAME)
        whole = dumps(base_frame(draw(frame_types), room_id, peer))
        return Bad("truncated", whole[: draw(st.integers(0, len(whole) - 1))], INVALID_FRAME)

    return st.one_of(
        random_values(),
        wrong_fields(),
        wrong_fields(),
        unknown_types(),
        deep_nesting(),
        non_finite(),
        duplicate_keys(),
        lone_surrogates(),
        binary(),
        broken_text(),
    )


# ---- the fuzzing -----------------------------------------------------------------------


def test_ten_thousand_generated_malformed_frames_each_get_their_error_code(
    target: Target,
) -> None:
    sent = 0
    started = time.monotonic()
    peer = target.users[1]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )
    @given(batch=st.lists(bad_frames(target.room_id, peer), min_size=BATCH, max_size=BATCH))
    def each_batch_is_answered(batch: list[Bad]) -> None:
        nonlocal sent
        ws = target.sockets[sent // BATCH % len(target.sockets)]
        replies = exchange(ws, batch, f"end-{sent}")
        sent += len(batch)
        assert_answered(batch, replies)

    each_batch_is_answered()
    elapsed = time.monotonic() - started
    print(f"fuzzed {sent} frames in {elapsed:.1f} s")  # shown with -s
    assert sent >= MIN_FRAMES
    assert elapsed < TIME_BUDGET_S


# ---- the corpus ------------------------------------------------------------------------


def load_corpus() -> list[dict[str, Any]]:
    return [json.loads(line) for line in CORPUS.read_text().splitlines() if line.strip()]


def corpus_frame(entry: dict[str, Any], target: Target) -> tuple[str | bytes, bool]:
    """An entry's frame (placeholders filled in) and whether it goes as a binary frame."""

    def fill(text: str) -> str:
        return text.replace("$ROOM", target.room_id).replace("$USER", target.users[1])

    binary = bool(entry.get("binary"))
    if "hex" in entry:
        raw = bytes.fromhex(entry["hex"]).replace(b"$ROOM", target.room_id.encode())
        return raw, binary
    text = entry["text"] if "text" in entry else "".join(p * n for p, n in entry["parts"])
    text = fill(text)
    return (text.encode() if binary else text), binary


def corpus_case(entry: dict[str, Any], target: Target) -> Bad:
    data, binary = corpus_frame(entry, target)
    if isinstance(data, bytes) and not binary:
        raise AssertionError(f"{entry['name']}: invalid UTF-8 text only closes")
    check_id = "id" in entry or entry["expect"] != INVALID_FRAME
    return Bad(entry["name"], data, entry["expect"], entry.get("id"), check_id)


CLOSING = [e for e in load_corpus() if e["expect"].startswith("close:")]


def test_the_corpus_of_nasty_frames_gets_its_error_codes(target: Target) -> None:
    cases = [corpus_case(e, target) for e in load_corpus() if e not in CLOSING]
    assert len(cases) >= 100
    assert_answered(cases, exchange(target.sockets[0], cases, "corpus-end"))


@pytest.mark.parametrize("entry", CLOSING, ids=[e["name"] for e in CLOSING])
def test_a_corpus_frame_the_protocol_closes_on_closes_with_its_code(
    target: Target, entry: dict[str, Any]
) -> None:
    data, binary = corpus_frame(entry, target)
    code = int(entry["expect"].removeprefix("close:"))
    ws = open_socket(target.instance, new_user_id("closer"))
    try:
        ws.send(data, text=not binary)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=FRAME_TIMEOUT_S)
    finally:
        ws.close()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code


INVALID_UTF8 = [
    b"\x80",  # a continuation byte with no lead
    b"\xbf\xbf",
    b"\xc0\xaf",  # overlong "/"
    b"\xc1\xbf",
    b"\xe0\x80\xaf",  # overlong, three bytes
    b"\xed\xa0\x80",  # an encoded surrogate
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xc3",  # truncated sequences
    b"\xe2\x82",
    b"\xf0\x9f\x98",
]


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    before=st.text(max_size=20),
    bad=st.sampled_from(INVALID_UTF8),
    after=st.text(max_size=20),
)
def test_invalid_utf8_in_a_text_frame_closes_with_1007(
    target: Target, before: str, bad: bytes, after: str
) -> None:
    data = b'{"type":"ping","id":"' + before.encode() + bad + after.encode() + b'"}'
    ws = open_socket(target.instance, new_user_id("utf8"))
    try:
        ws.send(data, text=True)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=FRAME_TIMEOUT_S)
    finally:
        ws.close()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1007


# ---- the aftermath (these run after the fuzzing above, in file order) ------------------


def test_every_fuzzed_connection_still_answers_ping(target: Target) -> None:
    for n, ws in enumerate(target.sockets):
        assert exchange(ws, [], f"after-{n}") == []


async def test_fuzzing_stored_nothing(target: Target, stores: Stores) -> None:
    dsn = stores.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn, timeout=FRAME_TIMEOUT_S)
    try:
        room = uuid.UUID(target.room_id)
        users = target.users
        messages = await conn.fetchval("select count(*) from messages where room_id = $1", room)
        sent = await conn.fetchval(
            "select count(*) from messages where sender_id = any($1::text[])", users
        )
        receipts = await conn.fetchval(
            "select count(*) from receipts where user_id = any($1::text[])", users
        )
        moved = await conn.fetchval(
            "select count(*) from members where user_id = any($1::text[])"
            " and (delivered_seq > 0 or read_seq > 0)",
            users,
        )
        rooms = await conn.fetchval(
            "select count(distinct room_id) from members where user_id = any($1::text[])", users
        )
        last_seq = await conn.fetchval("select last_seq from rooms where id = $1", room)
    finally:
        await conn.close()
    assert (messages, sent, receipts, moved, rooms, last_seq) == (
        SEED_MESSAGES,
        0,
        0,
        0,
        1,
        SEED_MESSAGES,
    )


def test_fuzzing_logged_no_unhandled_exception(target: Target) -> None:
    assert unhandled_errors(target.instance) == []


def test_the_fuzzed_instance_is_alive_and_ready(target: Target) -> None:
    assert alive(target.instance)
    assert httpx.get(f"{target.instance.http}/readyz", timeout=FRAME_TIMEOUT_S).status_code == 200
