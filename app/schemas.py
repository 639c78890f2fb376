"""Wire shapes shared by REST and the WebSocket. Timestamps serialize as UTC with a `Z`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
)
from pydantic.config import JsonDict
from pydantic_core import core_schema

from app.domain.limits import Limits
from app.domain.text import storable


# Named enums rather than inline literals: each becomes one component of the documents,
# shared by every model that uses it, so generated clients get one type per concept.
class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class AssignableRole(StrEnum):
    """A role that can be given when adding a member (there is one owner, its creator)."""

    ADMIN = "admin"
    MEMBER = "member"


class RoomKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"


class MessageKind(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"


UserId = str
# Sequence numbers and cursors: JSON-safe integers, so no client or driver overflows.
MAX_SEQ = 2**53 - 1


def _storable(value: str) -> str:
    if not storable(value):
        raise ValueError("text must not contain NUL characters or unpaired surrogates")
    return value


# What the documents say of input text (the checks themselves are `_storable` and the
# domain's, which read the limits from settings; the documents show the defaults).
# Spelled out, since `\s` means different sets in ECMA-262 (which JSON Schema readers
# use), Python and Rust (pydantic): what `str.strip()` removes, and the URL characters.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"
URL = r"^https?://[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
DEFAULT_LIMITS = Limits()


def _documented(**keywords: object) -> Callable[[JsonDict], None]:
    def extra(schema: JsonDict) -> None:
        schema.update(keywords)  # type: ignore[arg-type]

    return extra


def _no_nul(schema: JsonDict) -> None:
    schema.setdefault("pattern", NO_NUL)


# Every string a client sends: PostgreSQL refuses NUL and invalid UTF-8, so they are
# refused here, as a validation error, before anything reaches a store.
Text = Annotated[str, AfterValidator(_storable), Field(json_schema_extra=_no_nul)]
# A name: not blank, at most `max_name_chars` once trimmed.
Name = Annotated[
    Text,
    Field(
        min_length=1,
        json_schema_extra=_documented(pattern=NOT_BLANK, maxLength=DEFAULT_LIMITS.max_name_chars),
    ),
]


def _json_integer(value: object) -> object:
    """A JSON integer may be written `5.0`; anything else (`true`, `"5"`) is not one."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True, slots=True)
class JsonInteger:
    """An integer as JSON Schema means it: `5` or `5.0`, never `true` or `"5"` (lax mode
    would read those as 1 and 5), within bounds that the documents show."""

    ge: int
    le: int

    def __get_pydantic_core_schema__(
        self, source: object, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        bounded = core_schema.int_schema(ge=self.ge, le=self.le, strict=True)
        return core_schema.no_info_before_validator_function(_json_integer, bounded)


Seq = Annotated[int, JsonInteger(0, MAX_SEQ)]


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- outputs ---------------------------------------------------------------------------


class Attachment(WireModel):
    """A file or image that lives at `url`; the service stores the reference, not the bytes."""

    url: Text = Field(min_length=1, max_length=2048, pattern=URL)
    name: Text = Field(min_length=1, max_length=255)
    mime: Text = Field(min_length=3, max_length=255, pattern=r"^[\w.+-]+/[\w.+-]+$")
    size: Annotated[int, JsonInteger(0, 2**53)]


class Message(WireModel):
    id: uuid.UUID
    room_id: uuid.UUID
    seq: int
    sender_id: UserId
    kind: MessageKind
    body: str | None
    attachment: Attachment | None
    client_msg_id: uuid.UUID
    created_at: datetime
    edited_at: datetime | None
    deleted: bool

    # A new message goes out twice, as a push and in its sender's ack: dumped once.
    _json: dict[str, Any] | None = PrivateAttr(default=None)

    def as_json(self) -> dict[str, Any]:
        """The message as it goes on the wire (JSON mode), made on first use. A message is
        not changed once made: an edit builds a new one (not `model_copy`, which would
        carry this dump along)."""
        if self._json is None:
            self._json = self.model_dump(mode="json")
        return self._json


class Member(WireModel):
    user_id: UserId
    name: str | None
    role: Role
    delivered_seq: int
    read_seq: int


class Room(WireModel):
    id: uuid.UUID
    kind: RoomKind
    name: str | None
    created_at: datetime
    last_seq: int
    members: list[Member]


class RoomSummary(Room):
    """A room as it appears in the caller's room list."""

    unread: int
    last_message: Message | None
    read_seq: int
    delivered_seq: int


class User(WireModel):
    id: UserId
    name: str | None
    online: bool
    last_seen: datetime | None


class Presence(WireModel):
    user_id: UserId
    online: bool
    last_seen: datetime | None


class Receipt(WireModel):
    """Where one recipient stands on one message; null until reached."""

    user_id: UserId
    delivered_at: datetime | None
    read_at: datetime | None


class Watermarks(WireModel):
    room_id: uuid.UUID
    delivered_seq: int
    read_seq: int


class RoomPage(WireModel):
    items: list[RoomSummary]
    next_cursor: str | None


class MessagePage(WireModel):
    items: list[Message]
    next_cursor: str | None


class ReceiptPage(WireModel):
    items: list[Receipt]
    next_cursor: str | None


class PresenceList(WireModel):
    items: list[Presence]


# ---- inputs ----------------------------------------------------------------------------


class DirectRoomCreate(WireModel):
    user_id: Text = Field(min_length=1, max_length=64)


class GroupCreate(WireModel):
    name: Name
    member_ids: list[Annotated[Text, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list
    )


class RoomUpdate(WireModel):
    name: Name


class MemberAdd(WireModel):
    user_id: Text = Field(min_length=1, max_length=64)
    role: AssignableRole = AssignableRole.MEMBER


# Longer bodies are refused with PAYLOAD_TOO_LARGE (413).
BODY_KEYWORDS = {"maxLength": DEFAULT_LIMITS.max_body_chars}
BODY_LENGTH = _documented(**BODY_KEYWORDS)
# What `messages.check_content` enforces: a text message has a body that is not blank and
# no attachment; an image or a file has an attachment.
SEND_RULE: JsonDict = {
    # if / then / else rather than anyOf: client generators turn an anyOf beside
    # `properties` into a union of partial models, which reads (and type-checks) badly.
    "if": {"properties": {"kind": {"enum": ["image", "file"]}}, "required": ["kind"]},
    "then": {"required": ["attachment"], "properties": {"attachment": {"type": "object"}}},
    "else": {
        "required": ["body"],
        "properties": {
            "body": {"type": "string", "pattern": NOT_BLANK},
            "attachment": {"type": "null"},
        },
    },
}


class MessageSend(WireModel):
    model_config = ConfigDict(json_schema_extra=SEND_RULE)

    client_msg_id: uuid.UUID
    kind: MessageKind = MessageKind.TEXT
    body: Annotated[Text | None, Field(json_schema_extra=BODY_LENGTH)] = None
    attachment: Attachment | None = None


class MessageEdit(WireModel):
    # Blank is refused for a text message (an image's or file's caption may be emptied).
    body: Text = Field(json_schema_extra=_documented(pattern=NOT_BLANK, **BODY_KEYWORDS))


class ReadMark(WireModel):
    seq: Seq
