"""The leading scheduler's periodic work beside placement, on a thread of its own, so
that a slow mail server or a large cluster sample never delays a placement:

- charge running sessions every `CREDIT_CHARGE_SECONDS` (`credits.charge_running`), and
  every few seconds warn, then stop, those whose payer ran out (`credits.enforce`);
- move the sessions of nodes drained with `--migrate` once they have checkpointed
  (`migration.advance`);
- flag sessions that stalled (`alerts.flag_stalled`);
- record the cluster's state every `CLUSTER_SAMPLE_SECONDS` (`monitoring`);
- tell competitions' entrants of rounds that opened or ended (`announcements`);
- advance each running hyperparameter search (`searches.advance_all`), and keep each
  server's replicas running (`serving.advance_all`: one that ended is replaced);
- send the e-mails waiting in the outbox (`alerts.send_pending`).

Each task runs only while this process holds the leader lease, and a task that fails
is logged and tried again at its next turn.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from flask import Flask
from redis import Redis

from portal.extensions import db
from portal.services import alerts, credits, migration, monitoring, searches, serving
from portal.services.competitions import announcements

log = logging.getLogger(__name__)

ENFORCE_SECONDS = 5.0
MIGRATE_SECONDS = 2.0
STALL_SECONDS = 30.0
MAIL_SECONDS = 5.0
ROUNDS_SECONDS = 30.0
SEARCH_SECONDS = 2.0
SERVE_SECONDS = 2.0


class Housekeeper:
    def __init__(self, app: Flask, redis: Redis, leading: Callable[[], bool]):
        self.app = app
        self.redis = redis
        self.leading = leading
        config = app.config
        self.tasks: list[tuple[str, float, Callable[[], object]]] = [
            ("charge", float(config["CREDIT_CHARGE_SECONDS"]), credits.charge_running),
            ("enforce", ENFORCE_SECONDS, lambda: credits.enforce(self.redis)),
            ("migrate", MIGRATE_SECONDS, lambda: migration.advance(self.redis)),
            ("stalls", STALL_SECONDS, alerts.flag_stalled),
            (
                "cluster sample",
                float(config["CLUSTER_SAMPLE_SECONDS"]),
                monitoring.record_cluster_sample,
            ),
            ("rounds", ROUNDS_SECONDS, announcements.announce_rounds),
            ("searches", SEARCH_SECONDS, lambda: searches.advance_all(self.redis)),
            ("servers", SERVE_SECONDS, lambda: serving.advance_all(self.redis)),
            ("mail", MAIL_SECONDS, alerts.send_pending),
        ]
        self._last: dict[str, float] = {}

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            if self.leading():
                self.run_due()

    def run_due(self) -> None:
        now = time.monotonic()
        for name, every, task in self.tasks:
            if now - self._last.get(name, float("-inf")) < every:
                continue
            self._last[name] = now
            with self.app.app_context():
                try:
                    task()
                except Exception:
                    log.exception("%s failed", name)
                    db.session.rollback()
                finally:
                    db.session.remove()
