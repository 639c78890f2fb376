"""Content limits the domain enforces, each from a setting."""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_chars: int = 4000
    max_group_members: int = 10000
    max_page_size: int = 200
    max_name_chars: int = 200

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_body_chars=settings.max_body_chars,
            max_group_members=settings.max_group_members,
            max_page_size=settings.max_page_size,
            max_name_chars=settings.max_name_chars,
        )
