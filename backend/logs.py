"""Log set-up for the server's processes: text or JSON lines, and a bound on warnings.

Every refusal is logged (a bad MAC, a malformed event, ...), so hostile traffic would
otherwise write a line per datagram. `Summarize` lets the first `burst` warnings of a
kind through per window and counts the rest; the count is written as one line when that
kind shows up again after the window, or when the process ends.
"""

from __future__ import annotations

import atexit
import json
import logging
import time
from typing import Callable

_SUMMARY = "summary"  # attribute set on the lines Summarize writes itself


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") +
                 f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


JsonFormatter.converter = time.gmtime


class Summarize(logging.Filter):
    """At most `burst` WARNING-or-higher records per kind (logger and message template)
    per `window_s`; the others are counted and reported in one line."""

    def __init__(self, burst: int = 20, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.burst, self.window_s, self._clock = burst, window_s, clock
        self._kinds: dict[tuple[str, str], list] = {}  # kind: [window start, shown, held back]
        self._emit: Callable[[logging.LogRecord], None] | None = None

    def attach(self, handler: logging.Handler) -> None:
        handler.addFilter(self)
        self._emit = handler.handle
        atexit.register(self.flush)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, _SUMMARY, False):
            return True
        # A record forwarded from the writer process arrives formatted; it carries its
        # template (backend/ingest/writer_process.py).
        kind = (record.name, str(getattr(record, "template", record.msg)))
        now = self._clock()
        state = self._kinds.get(kind)
        if state is None or now - state[0] >= self.window_s:
            if state is not None and state[2]:
                self._report(kind, state)
            self._kinds[kind] = state = [now, 0, 0]
        if state[1] < self.burst:
            state[1] += 1
            return True
        state[2] += 1
        return False

    def flush(self) -> None:
        for kind, state in self._kinds.items():
            if state[2]:
                self._report(kind, state)
                state[2] = 0

    def _report(self, kind: tuple[str, str], state: list) -> None:
        if self._emit is None:
            return
        name, template = kind
        record = logging.LogRecord(name, logging.WARNING, __file__, 0,
                                   "%d more like %r in %.0f s (not shown one by one)",
                                   (state[2], template, self.window_s), None)
        setattr(record, _SUMMARY, True)
        self._emit(record)


def setup(verbose: bool, log_format: str) -> None:
    """The process's logging: level, format (`text` or `json`) and the warning bound."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    Summarize().attach(handler)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("coap").setLevel(logging.WARNING)  # aiocoap's per-message chatter
