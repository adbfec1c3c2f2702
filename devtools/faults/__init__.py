"""Fault injection for Replenish, measured (`make faults`, docs/reliability.md).

A top-level package, not `devtools/bench/`: devtools/bench/ measures speed and belongs to the
performance work; this package *reuses* bench's load generator and fleet provisioner
but owns what it adds (a backend it can SIGKILL, a lossy UDP relay, hostile input), so
neither side has to edit the other's modules.

- `backend_proc`  the real backend (`python -m backend run`) as a process group we kill
- `devices`       load-generator devices that keep unanswered events, as the firmware does
- `crash`         the crash scenario: load, SIGKILLs, merchant down, checks
- `relay`         a seeded lossy UDP relay (drop, duplicate, reorder, delay)
- `hostile`       seeded hostile inputs for every decoder of untrusted bytes, counted
- `isolation`     one household's webhook blackholed: the others' order latency, next
                  to a run without it (`blackhole`: the endpoint that never answers)
"""
