"""A real-time messaging service: private and group chat, presence, typing, read receipts."""

__version__ = "0.1.0"
