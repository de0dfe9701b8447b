"""Leader election: one scheduler holds a lease in Redis; the others are warm standbys.

The holder renews the lease from a thread of its own every `renew_seconds`; when it
stops (killed, hung, cut off) the lease lapses after `ttl_seconds` and the first standby
to try takes it. Placement does not depend on there being one leader at every instant:
each session's move from pending to scheduled is a conditional update, so whatever the
timing of a failover, a session is placed once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

from redis import Redis
from redis.exceptions import RedisError

from portal import keys

log = logging.getLogger(__name__)


# Extend the lease only if we still hold it; drop it only if we still hold it.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    def __init__(
        self,
        redis: Redis,
        *,
        holder: str | None = None,
        key: str = keys.SCHEDULER_LEADER,
        ttl_seconds: float = 2.0,
        renew_seconds: float = 0.5,
    ):
        self.redis = redis
        self.holder = holder or holder_id()
        self.key = key
        self.ttl_ms = int(ttl_seconds * 1000)
        self.renew_seconds = renew_seconds
        self._held = threading.Event()
        self._renewed_at = 0.0
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)

    @property
    def held(self) -> bool:
        """Held, and renewed recently enough that it cannot have lapsed meanwhile: a
        leader paused past its lease stops acting before it hears it lost it."""
        margin = min(0.5, self.ttl_ms / 4000)
        fresh = time.monotonic() < self._renewed_at + self.ttl_ms / 1000 - margin
        return self._held.is_set() and fresh

    def try_acquire(self) -> bool:
        """Take the lease if it is free, or keep it if it is ours."""
        try:
            asked_at = time.monotonic()
            if self.redis.set(self.key, self.holder, nx=True, px=self.ttl_ms) or self._renew(
                keys=[self.key], args=[self.holder, self.ttl_ms]
            ):
                self._renewed_at = asked_at
                self._held.set()
            else:
                self._held.clear()
        except RedisError as exc:
            log.warning("lease: Redis unreachable (%s)", exc)
            self._held.clear()
        return self.held

    def keep(self, stop: threading.Event) -> None:
        """Run in a thread: acquire or renew until `stop`, then let go."""
        while not stop.is_set():
            was_held = self.held
            if self.try_acquire() != was_held:
                log.info("%s leadership (%s)", "took" if self.held else "lost", self.holder)
            # A standby tries often, so that it takes over soon after the lease lapses.
            stop.wait(self.renew_seconds if self.held else min(0.2, self.renew_seconds))
        self.release()

    def release(self) -> None:
        with contextlib.suppress(RedisError):
            self._release(keys=[self.key], args=[self.holder])
        self._held.clear()

    def current_holder(self) -> str | None:
        value = self.redis.get(self.key)
        if isinstance(value, bytes):
            return value.decode()
        return value or None
