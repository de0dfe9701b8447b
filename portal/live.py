"""One Redis subscription per process for every live page and node poll it serves.

A page that follows a leaderboard, or a node agent waiting for work, waits on
`Broadcaster.wait`; one thread (a greenlet under gunicorn's gevent workers) listens to
Redis for changes of any board and for work queued for any node, and wakes the waiters.
Hundreds of open pages and polls thus hold no Redis connection each, and a change is
received once per process.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app
from redis import Redis
from redis.exceptions import RedisError

from portal import keys

log = logging.getLogger(__name__)


class Broadcaster:
    def __init__(self, redis: Redis):
        self.redis = redis
        self._versions: dict[str, int] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = threading.Event()

    def _ensure_listening(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="live", daemon=True)
                self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(*keys.LIVE_PATTERNS)
                while not self._stopping.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "pmessage":
                        continue
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    version = int(message["data"])
                    with self._changed:
                        if version > self._versions.get(channel, -1):
                            self._versions[channel] = version
                        self._changed.notify_all()
                pubsub.close()
            except (RedisError, ValueError, OSError) as exc:
                log.warning("live updates paused: %s; listening again in 1 s", exc)
                self._stopping.wait(1)

    def wait(self, channel: str, after: int, timeout: float) -> int | None:
        """The channel's version once it is past `after`, or None after `timeout`."""
        self._ensure_listening()
        with self._changed:
            self._changed.wait_for(lambda: self._versions.get(channel, -1) > after, timeout)
            version = self._versions.get(channel)
        return version if version is not None and version > after else None


def broadcaster() -> Broadcaster:
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    existing = app.extensions.get("live")
    if existing is None:
        from portal.queue import redis_connection

        existing = app.extensions["live"] = Broadcaster(redis_connection())
    return existing
