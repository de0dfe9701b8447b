"""Work that holds the processor for long, kept off a gevent worker's event loop.

The portal's gunicorn workers are gevent's: one thread serves a thousand connections,
and tells gunicorn it is alive between them. A request that computes for seconds (an
archive inflated and hashed) would stall every other connection of its worker, and past
gunicorn's timeout get the worker killed with all of them. `off_the_loop` runs such work
in gevent's pool of native threads instead; zlib and hashlib release the interpreter
lock while they work, so the loop goes on beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def off_the_loop(work: Callable[..., T], *args: Any) -> T:
    """`work(*args)`, in gevent's thread pool where gevent runs the process (its
    exceptions are raised here), else right here."""
    try:
        from gevent import get_hub, monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return work(*args)
    if not monkey.is_module_patched("threading"):
        return work(*args)
    return get_hub().threadpool.apply(work, args)
