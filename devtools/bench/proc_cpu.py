"""CPU time of a process tree, from /proc: what a benchmark phase cost its servers.

A process's own CPU is its utime + stime. A child that exited and was reaped (a
PostgreSQL backend whose connection closed, an autovacuum worker, a writer process
that was replaced) is gone from /proc, but the kernel has added its time to its
parent's cutime + cstime. Summing both over the live tree counts every process that
ran in it exactly once, so work done by a process that ended mid-phase is not lost.
"""

from __future__ import annotations

import os

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None  # exited meanwhile


def ticks(pid: int) -> tuple[int, int]:
    """(own, reaped) of `pid`, from one reading: utime + stime (all its threads), and
    cutime + cstime (its children that exited and were reaped)."""
    fields = _stat(pid)
    if not fields:
        return 0, 0
    return int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def tree(root: int) -> list[int]:
    """`root` and every live descendant (from the parent pids in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def seconds(ticks: int) -> float:
    return ticks / _TICK


def tree_cpu_s(root: int) -> float:
    """CPU seconds of `root` and its descendants, live or ended and reaped."""
    return seconds(sum(sum(ticks(pid)) for pid in tree(root)))
