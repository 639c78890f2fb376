"""The reference Python client of the chat service's WebSocket (`GET /v1/ws`).

    async with ChatClient("ws://127.0.0.1:8000/v1/ws", get_token) as client:
        await client.send(room_id, "hello")
        async for event in client.messages():
            print(event.message["seq"], event.message["body"])

See `chat_client/README.md` for what it guarantees (reconnects, sync, exactly-once
in-order delivery per room, delivered acks, token renewal).
"""

from chat_client.backoff import Backoff
from chat_client.client import ChatClient, ClientStats, TokenProvider
from chat_client.errors import ChatError, ClientClosed, ConnectionLost, Refused
from chat_client.events import (
    Attachment,
    ConnectionEvent,
    Event,
    Message,
    MessageEvent,
    MessageUpdatedEvent,
    PresenceEvent,
    ReceiptEvent,
    RoomEvent,
    TypingEvent,
)
from chat_client.sequencer import Sequencer

__all__ = [
    "Attachment",
    "Backoff",
    "ChatClient",
    "ChatError",
    "ClientClosed",
    "ClientStats",
    "ConnectionEvent",
    "ConnectionLost",
    "Event",
    "Message",
    "MessageEvent",
    "MessageUpdatedEvent",
    "PresenceEvent",
    "ReceiptEvent",
    "Refused",
    "RoomEvent",
    "Sequencer",
    "TokenProvider",
    "TypingEvent",
]
