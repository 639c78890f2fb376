"""The AsyncAPI 3 document of the WebSocket protocol, generated from the frame models.

Because the schemas come from the same pydantic models the server parses and renders
frames with, the document cannot drift from the code; a test compares the committed
`openapi/asyncapi.yaml` with this output.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app import __version__
from app.ws import frames

CLIENT_FRAMES: list[type[BaseModel]] = [
    frames.AuthFrame,
    frames.SendFrame,
    frames.SyncFrame,
    frames.DeliveredFrame,
    frames.ReadFrame,
    frames.TypingFrame,
    frames.PresenceWatchFrame,
    frames.PingFrame,
]
SERVER_FRAMES: list[type[BaseModel]] = [
    frames.HelloFrame,
    frames.AckFrame,
    frames.ErrorFrame,
    frames.PongFrame,
    frames.MessageFrame,
    frames.MessageUpdatedFrame,
    frames.ReceiptFrame,
    frames.TypingPushFrame,
    frames.PresenceFrame,
    frames.RoomFrame,
    frames.ResyncFrame,
]

DESCRIPTION = """\
One JSON object per text frame, each with a `type`. Authenticate with the
`Authorization: Bearer` header, or with an `auth` first frame within 10 seconds.
`hello` is the first frame of every connection; an `auth` first frame is acked right
after it, before any push. A client frame may carry an `id`; its answer is an `ack`
(or `error`) with that id.
Close codes: 4401 authentication failed or expired, 4403 origin refused, 4408 no auth
in time, 4429 too many connections or frames (or not reading), 1009 frame too large,
1007 text frame that is not UTF-8, 1013 a data store is unavailable at connect (retry),
1001 server shutting down (reconnect and `sync`). After any close, reconnect and `sync`.
"""


def frame_type(model: type[BaseModel]) -> str:
    value: str = model.model_fields["type"].annotation.__args__[0]  # type: ignore[union-attr]
    return value


def _message_name(model: type[BaseModel]) -> str:
    return model.__name__


def document() -> dict[str, Any]:
    models = CLIENT_FRAMES + SERVER_FRAMES
    _, schema = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    schemas = schema["$defs"]
    messages = {
        _message_name(m): {
            "name": frame_type(m),
            "title": frame_type(m),
            "summary": (m.__doc__ or frame_type(m)).strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{m.__name__}"},
        }
        for m in models
    }

    def refs(group: list[type[BaseModel]]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/socket/messages/{_message_name(m)}"} for m in group]

    return {
        "asyncapi": "3.0.0",
        "info": {"title": "Chat WebSocket", "version": __version__, "description": DESCRIPTION},
        "servers": {
            "local": {
                "host": "localhost:8000",
                "protocol": "ws",
                "description": "`chat serve` on its defaults",
            }
        },
        "defaultContentType": "application/json",
        "channels": {
            "socket": {
                "address": "/v1/ws",
                "title": "The WebSocket",
                "messages": {
                    _message_name(m): {"$ref": f"#/components/messages/{_message_name(m)}"}
                    for m in models
                },
            }
        },
        "operations": {
            "clientFrames": {
                "action": "receive",
                "title": "Frames a client sends",
                "channel": {"$ref": "#/channels/socket"},
                "messages": refs(CLIENT_FRAMES),
            },
            "serverFrames": {
                "action": "send",
                "title": "Frames the server sends",
                "channel": {"$ref": "#/channels/socket"},
                "messages": refs(SERVER_FRAMES),
            },
        },
        "components": {"schemas": schemas, "messages": messages},
    }


class _Dumper(yaml.SafeDumper):
    pass


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def render() -> str:
    return yaml.dump(document(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
