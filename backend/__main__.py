"""`python -m backend ...` is the `replenish` command (used to start sibling processes)."""

from backend.cli import main

main()
