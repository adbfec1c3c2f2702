"""The fulfillment interface and the worker thread that drives it."""

from __future__ import annotations

import abc
import logging
import threading
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from backend.db import utcnow

log = logging.getLogger(__name__)


class Fulfillment(abc.ABC):
    name: str

    @abc.abstractmethod
    def advance(self, session: Session, now: datetime) -> int:
        """Move due orders on inside `session`; return how many changed."""


class FulfillmentWorker:
    """Polls the fulfillment adapter; each round is one transaction."""

    def __init__(self, sessions: sessionmaker, adapter: Fulfillment, poll_s: float):
        self._sessions = sessions
        self._adapter = adapter
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fulfillment", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def run_once(self) -> int:
        with self._sessions() as session, session.begin():
            return self._adapter.advance(session, utcnow())

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.run_once()
            except Exception:  # keep going: the next round retries the same orders
                log.exception("fulfillment round failed")
