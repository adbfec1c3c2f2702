"""`python -m devtools.faults.serve run ...` is `python -m backend run ...` (the same CLI, the
same code) with one constant changed: the outbox lease, from REPLENISH_FAULTS_LEASE_S.

Why: a worker killed mid-delivery leaves its outbox item leased for
`backend.orders.outbox.LEASE_S` (60 s) before another worker may take it again. The crash
scenario kills workers on purpose and has a time budget (its CI form runs in about a
minute), so it shortens the lease; nothing else differs. A real setting
(REPLENISH_OUTBOX_LEASE_S) would be cleaner; it belongs to the order engine's owner
(docs/reliability.md, "Not done yet").
"""

import os

from backend.orders import outbox

if os.environ.get("REPLENISH_FAULTS_LEASE_S"):
    outbox.LEASE_S = float(os.environ["REPLENISH_FAULTS_LEASE_S"])

from backend.cli import main  # noqa: E402  (after the lease is set)

# Guarded: the writer's forkserver re-imports the main module as __mp_main__.
if __name__ == "__main__":
    main()
