"""orjson on every wire path: several times faster than the standard library's json."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pydantic_core
from fastapi.responses import JSONResponse


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class DuplicateKey(ValueError):
    pass


_KEY_END = re.compile(rb'"\s*:')


def _count_keys(value: Any) -> int:
    if isinstance(value, dict):
        return len(value) + sum(_count_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_keys(v) for v in value)
    return 0


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise DuplicateKey("duplicate key in a JSON object")
    return result


def loads_strict(raw: str | bytes) -> Any:
    """Parse untrusted JSON: no NaN or Infinity, bounded nesting, no duplicate keys.

    The fast parser (jiter, through pydantic-core) refuses NaN and deep nesting but keeps
    the last of duplicate keys silently. Every key ends in `"` then `:`, so when the text
    has no more such endings than the parsed value has keys there is no duplicate; only
    otherwise (a duplicate, or `":` inside a string) is the text parsed again to be sure.
    """
    data = pydantic_core.from_json(raw, allow_inf_nan=False)
    encoded = raw.encode() if isinstance(raw, str) else raw
    if len(_KEY_END.findall(encoded)) > _count_keys(data):
        json.loads(encoded, object_pairs_hook=_no_duplicates)
    return data
