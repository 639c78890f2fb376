"""Real PostgreSQL and Redis servers run from pip-installed binaries.

Serves the "embedded default" mode and the test suite. The caller owns the lifecycle:
nothing here registers atexit hooks, so one process never stops servers that another
process still uses.
"""

from app.infra.embedded.postgres import EmbeddedPostgres
from app.infra.embedded.redis import EmbeddedRedis

__all__ = ["EmbeddedPostgres", "EmbeddedRedis"]
