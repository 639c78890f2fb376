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
