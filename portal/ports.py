"""Free TCP ports for the platform's own listeners.

A port the kernel hands out for `bind(port 0)` comes from the ephemeral range, the
same range it draws the local ports of outgoing connections from; between choosing
such a port and a server binding it (seconds later, after migrations), any client on
the machine may take it for a connection. Ports below the ephemeral range are never
handed out that way, so the platform chooses its ports there.
"""

import random
import socket
from pathlib import Path

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000
TRIES = 200


def ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (32768 where unknown)."""
    try:
        return int(RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on `host` now, below the ephemeral range where there is room."""
    high = ephemeral_low()
    if high - LOWEST >= TRIES:
        for port in random.sample(range(LOWEST, high), TRIES):
            if port_is_free(host, port):
                return port
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
