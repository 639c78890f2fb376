"""orjson on every wire path: several times faster than the standard library's json."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
