"""`python -m backend ...` is the `replenish` command (used to start sibling processes)."""

from backend.cli import main

if __name__ == "__main__":  # not when multiprocessing re-imports it
    main()
