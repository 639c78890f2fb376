"""What the domain announces after a commit; the real-time layer turns these into pushes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class RoomMessage:
    """A frame for every live connection of every member of a room (a new or changed message)."""

    room_id: str
    frame: dict[str, Any]
    skip_connection: str | None = None
    skip_user: str | None = None
    # May be dropped while the service is behind: the next event repeats it (typing).
    advisory: bool = False
    # A new message's `seq`: a room's new messages are pushed in this order.
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class UserFrame:
    """A frame for every live connection of some users (receipts, room events)."""

    user_ids: tuple[str, ...]
    frame: dict[str, Any]
    # Connections that have their answer instead: marks from several connections of one
    # user can be written, and told, as one move (see `app.domain.watermarks`).
    skip_connections: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MembershipChanged:
    """A user joined or left a room: their connections start or stop following it."""

    room_id: str
    user_id: str
    change: Literal["added", "removed"]


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """A user came online or went offline: for the connections watching them. `version`
    is the user's presence version the frame's state was read at (see
    `ports.PresenceSnapshot`); None where it could not be read."""

    user_id: str
    frame: dict[str, Any]
    version: int | None = None


Event = RoomMessage | UserFrame | MembershipChanged | PresenceChanged


@dataclass(slots=True)
class EventLog:
    """Events gathered during one unit of work, published only once it has committed."""

    events: list[Event] = field(default_factory=list)

    def emit(self, event: Event) -> None:
        self.events.append(event)
