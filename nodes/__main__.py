"""`python -m nodes`: run a node agent until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path

from redis import Redis
from rq import Queue, SimpleWorker

from nodes import jobs
from nodes.agent import Agent
from nodes.client import PortalClient
from nodes.probe import Nvml, ResourceProbe, parse_declared_gpus
from nodes.runtime import RUNTIMES, get_runtime


def parse_args() -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="python -m nodes", description=__doc__)
    parser.add_argument(
        "--url", default=env("PODIUM_URL", "http://127.0.0.1:5000"), help="the portal's URL"
    )
    parser.add_argument("--name", default=env("PODIUM_NODE_NAME", socket.gethostname()))
    parser.add_argument(
        "--workdir", type=Path, default=Path(env("PODIUM_NODE_WORKDIR", "instance/node"))
    )
    parser.add_argument(
        "--runtime", choices=sorted(RUNTIMES), default=env("PODIUM_NODE_RUNTIME", "local")
    )
    parser.add_argument(
        "--image",
        default=env("PODIUM_NODE_IMAGE", "podium/base:latest"),
        help="the Docker runtime's image for sessions that name none",
    )
    parser.add_argument(
        "--gpus",
        default=env("PODIUM_NODE_GPUS", ""),
        help="declared GPUs where NVML finds none: COUNT[:MODEL[:MEMORY_MB]]",
    )
    parser.add_argument(
        "--stop-sessions-on-exit",
        action="store_true",
        help="end running Docker sessions when the agent stops (by default a restarted "
        "agent adopts them; local sessions always end with the agent)",
    )
    parser.add_argument(
        "--cache-gb",
        type=float,
        default=float(env("PODIUM_NODE_CACHE_GB", "50")),
        help="room for cached dataset versions; the least recently used go first",
    )
    parser.add_argument(
        "--redis-url",
        default=env("REDIS_URL"),
        help="defaults to the URL the portal hands out at registration",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=float(env("PODIUM_NODE_HEARTBEAT_SECONDS", "2"))
    )
    return parser.parse_args()


def runtime_for(args: argparse.Namespace):
    if args.runtime == "docker":
        return get_runtime("docker", node=args.name, default_image=args.image)
    return get_runtime(args.runtime, node=args.name)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s node {args.name} %(message)s")
    join_token = os.environ.get("PODIUM_NODE_JOIN_TOKEN")
    if not join_token:
        raise SystemExit("set PODIUM_NODE_JOIN_TOKEN to the cluster's node join token")
    args.workdir.mkdir(parents=True, exist_ok=True)
    probe = ResourceProbe(Nvml(), parse_declared_gpus(args.gpus))
    agent = Agent(
        PortalClient(args.url),
        runtime_for(args),
        probe,
        name=args.name,
        workdir=args.workdir.resolve(),
        heartbeat_seconds=args.heartbeat,
        cache_bytes=int(args.cache_gb * 2**30),
    )
    registration = agent.register(join_token)
    redis = Redis.from_url(args.redis_url or registration["redis_url"])
    jobs.attach(agent)
    agent.start_background()
    # Jobs run in this process (no fork per job): a session's process must stay a child
    # of the agent that monitors it.
    worker = SimpleWorker(
        [Queue(registration["queue"], connection=redis)],
        connection=redis,
        name=f"node-{args.name}-{os.getpid()}",
    )
    try:
        worker.work(logging_level="WARNING")
    finally:
        agent.shutdown(keep_sessions=args.runtime == "docker" and not args.stop_sessions_on_exit)


if __name__ == "__main__":
    main()
