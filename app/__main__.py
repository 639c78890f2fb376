"""`python -m app` is the `chat` command."""

from app.cli import main

main()
