"""`python -m nodes`: run a node agent until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from pathlib import Path

from nodes.agent import Agent
from nodes.client import PortalClient
from nodes.jobs import WorkLoop
from nodes.monitor import ResourceMonitor
from nodes.probe import Nvml, ResourceProbe, parse_declared_gpus
from nodes.runtime import RUNTIMES, get_runtime
from nodes.runtime.environments import PackageSettings
from nodes.runtime.local import LocalRuntime, session_uid_range


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
        "--operators",
        default=env("PODIUM_NODE_OPERATORS", ""),
        help="usernames, comma-separated, whose sessions alone this node runs; needed by "
        "a local-runtime agent that is not root (it cannot run sessions as other users)",
    )
    parser.add_argument(
        "--session-uids",
        default=env("PODIUM_NODE_SESSION_UIDS", ""),
        help="FIRST-LAST: the uids a root agent runs local sessions as (default 62000-62999)",
    )
    parser.add_argument(
        "--environments-gb",
        type=float,
        default=float(env("PODIUM_NODE_ENVIRONMENTS_GB", "100")),
        help="room for environment images (Docker runtime); the least recently used "
        "go first, never one in use",
    )
    parser.add_argument(
        "--build-timeout",
        type=float,
        default=float(env("PODIUM_NODE_BUILD_TIMEOUT_SECONDS", "1800")),
        help="seconds an environment's build may take",
    )
    parser.add_argument(
        "--build-network",
        default=env("PODIUM_NODE_BUILD_NETWORK", "bridge"),
        help="the Docker network environment builds reach the package registries through",
    )
    parser.add_argument(
        "--build-memory-mb",
        type=int,
        default=int(env("PODIUM_NODE_BUILD_MEMORY_MB", "4096")),
        help="memory an environment build may use",
    )
    parser.add_argument(
        "--heartbeat", type=float, default=float(env("PODIUM_NODE_HEARTBEAT_SECONDS", "2"))
    )
    parser.add_argument(
        "--monitor-seconds",
        type=float,
        default=float(env("PODIUM_NODE_MONITOR_SECONDS", "5")),
        help="how often each session's CPU, memory and GPUs are sampled (0: never)",
    )
    return parser.parse_args()


def runtime_for(args: argparse.Namespace):
    if args.runtime == "docker":
        return get_runtime(
            "docker",
            node=args.name,
            default_image=args.image,
            packages=PackageSettings.from_environ(os.environ),
            environments_file=args.workdir.resolve() / "environments.json",
            environments_budget_bytes=int(args.environments_gb * 2**30),
            build_timeout_s=args.build_timeout,
            build_network=args.build_network,
            build_memory_mb=args.build_memory_mb,
        )
    return get_runtime(
        args.runtime, node=args.name, session_uids=session_uid_range(args.session_uids)
    )


def prepare_workdir(workdir: Path) -> None:
    """The agent's folder: sessions run as other users pass through it to their own
    folders and the dataset cache, but cannot list it or read the agent's files."""
    for folder in (workdir, workdir / "sessions", workdir / "cache"):
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            folder.chmod(0o711)


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s node {args.name} %(message)s")
    # Read once and dropped: no child process inherits it (sessions get an allowlist of
    # the environment anyway).
    join_token = os.environ.pop("PODIUM_NODE_JOIN_TOKEN", "")
    operators = [name.strip() for name in args.operators.split(",") if name.strip()]
    runtime = runtime_for(args)
    if args.runtime == "local" and os.geteuid() != 0 and not operators:
        raise SystemExit(
            "a local-runtime agent that is not root runs sessions as its own user, so it "
            "could not keep them from reading its memory and files: name the users whose "
            "sessions it may run with --operators, or use --runtime docker"
        )
    workdir = args.workdir.resolve()
    # What the agent writes is its own (a root agent makes session folders and dataset
    # copies readable to sessions explicitly).
    os.umask(0o022 if os.geteuid() == 0 else 0o077)
    prepare_workdir(workdir)
    if isinstance(runtime, LocalRuntime):
        try:
            runtime.check_reachable(workdir)
        except RuntimeError as exc:
            raise SystemExit(f"node agent: {exc}") from exc
        runtime.reclaim(workdir)
    client = PortalClient(args.url)
    nvml = Nvml()
    monitor = (
        ResourceMonitor(client, nvml, interval=args.monitor_seconds)
        if args.monitor_seconds > 0
        else None
    )
    agent = Agent(
        client,
        runtime,
        ResourceProbe(nvml, parse_declared_gpus(args.gpus)),
        name=args.name,
        workdir=workdir,
        heartbeat_seconds=args.heartbeat,
        cache_bytes=int(args.cache_gb * 2**30),
        operators=operators,
        monitor=monitor,
    )
    if not join_token and not (workdir / "node.token").is_file():
        raise SystemExit("set PODIUM_NODE_JOIN_TOKEN to the cluster's node join token")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    work = WorkLoop(agent, client)
    try:
        agent.register(join_token)
        agent.start_background()
        # Jobs run in this process: a session's process must stay a child of the agent
        # that monitors it.
        work.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        work.stopping.set()
        agent.shutdown(keep_sessions=args.runtime == "docker" and not args.stop_sessions_on_exit)


if __name__ == "__main__":
    main()
