"""Redis channel names: an instance subscribes only to rooms and users it has sockets for."""

from __future__ import annotations

PREFIX = "chat"


def room(room_id: str) -> str:
    return f"{PREFIX}:room:{room_id}"


def user(user_id: str) -> str:
    return f"{PREFIX}:user:{user_id}"


def watch(user_id: str) -> str:
    """Presence changes of one user, for the instances with a connection watching them."""
    return f"{PREFIX}:watch:{user_id}"


def instance(instance_id: str) -> str:
    """Each instance's own channel: keeps its subscription alive while it follows nothing."""
    return f"{PREFIX}:instance:{instance_id}"


def instance_id_of(channel: str) -> str:
    """The instance id in an `instance(...)` channel name."""
    return channel.removeprefix(instance(""))


# Every instance follows this one: a notice on it means "pushes may have been lost, tell
# your clients to `sync`" (an instance that had to drop publishes while Redis was away).
RESYNC = f"{PREFIX}:resync"
