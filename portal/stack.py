"""`python -m portal.stack` (what `podium up` runs): the whole platform on one machine.

It prepares the instance folder (secrets, database migrations), starts an embedded
Redis unless REDIS_URL names one, then the portal (gunicorn), the scheduler, a grader
worker and one local node agent, each as a child process with its log under
instance/logs/. It prints the URL once every part answers, and on Ctrl-C or SIGTERM
stops them in order (the node agent first, so its sessions end and are reported),
leaving no process behind.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from portal.ports import free_port, port_is_free
from portal.redis_server import EmbeddedRedis
from portal.services import sealing

PR_SET_PDEATHSIG = 1
CHILD_ORDER = ("portal", "scheduler", "grader", "node")
MAX_RESTARTS, RESTART_WINDOW = 5, 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="podium up",
        description="Run the whole Podium platform on this machine: an embedded Redis "
        "(unless REDIS_URL is set), the portal, the scheduler, a grader worker and a local "
        "node agent. Ctrl-C stops it all.",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="seed users demo/demo and admin/admin; bind to 127.0.0.1 only",
    )
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument(
        "--host", default=None, help="address to bind (default 0.0.0.0, or 127.0.0.1 with --demo)"
    )
    parser.add_argument("--instance", type=Path, default=Path("instance"))
    parser.add_argument(
        "--gpus",
        default=os.environ.get("PODIUM_NODE_GPUS", ""),
        help="GPUs the local node declares where NVML finds none: COUNT[:MODEL[:MEMORY_MB]]",
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--migrate-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--runtime",
        choices=("local", "docker"),
        default=os.environ.get("PODIUM_NODE_RUNTIME") or None,
        help="how the local node runs sessions: Docker containers (the default where an "
        "engine answers; strangers' code runs only there) or local processes (trusted "
        "users' code only; the default with --demo)",
    )
    parser.add_argument(
        "--schedulers",
        type=int,
        default=1,
        help="scheduler processes: one leads, the others stand by",
    )
    return parser.parse_args(argv)


def secure_instance(instance: Path) -> None:
    """Everything in the instance folder is the platform's own. Sessions of the local
    runtime run as other users; they may pass through it to their folders under
    node/ (hence traverse, not list, when the node agent is root) and read nothing else."""
    instance.chmod(0o711 if os.geteuid() == 0 else 0o700)
    for entry in instance.iterdir():
        if entry.name == "node":
            continue
        entry.chmod(0o700 if entry.is_dir() else 0o600)


def ensure_instance(instance: Path) -> dict[str, str]:
    """Create the instance folder and its secrets once; later starts reuse them."""
    instance.mkdir(parents=True, exist_ok=True)
    (instance / "logs").mkdir(exist_ok=True)
    secure_instance(instance)
    settings = instance / "config.py"
    if not settings.exists():
        settings.write_text(
            "# Written once by `podium up`. Keep it secret.\n"
            f"SECRET_KEY = {secrets.token_hex(32)!r}\n"
            f"NODE_JOIN_TOKEN = {secrets.token_urlsafe(32)!r}\n"
            f"EMBEDDED_REDIS_PASSWORD = {secrets.token_urlsafe(32)!r}\n"
        )
        settings.chmod(0o600)
    namespace: dict[str, str] = {}
    exec(settings.read_text(), namespace)
    keys = ("SECRET_KEY", "NODE_JOIN_TOKEN", "EMBEDDED_REDIS_PASSWORD")
    values = {key: namespace[key] for key in keys}
    # The grader's key pair: hidden labels are sealed to its public half; the secret
    # half is handed to the grader only, never to the portal.
    key_file = instance / "grader" / "secret.key"
    values["GRADER_KEY_FILE"] = str(key_file)
    values["GRADER_PUBLIC_KEY"] = (
        sealing.public_key_of(key_file) if key_file.exists() else sealing.new_secret_key(key_file)
    )
    return values


def node_port(host: str, port: int) -> int:
    """The port of the portal process that answers nodes: the next one when it is free,
    else any free one."""
    if port_is_free(host, port + 1):
        return port + 1
    return free_port(host)


def migrate_and_seed_apart(instance: Path, *, demo: bool, grader_public_key: str) -> str:
    """`migrate_and_seed` (and `release_node_name`) in a process of its own, so that the
    supervisor, which runs as long as the platform, never holds the application (about
    200 MiB with the demo's libraries). Returns how to log in."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "portal.stack",
            "--migrate-only",
            "--instance",
            str(instance),
            *(["--demo"] if demo else []),
        ],
        env=dict(os.environ, PODIUM_GRADER_PUBLIC_KEY=grader_public_key),
        stdout=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit("podium up: the database could not be migrated (see above)")
    return done.stdout.strip().splitlines()[-1]


def migrate_and_seed(instance: Path, *, demo: bool, grader_public_key: str = "") -> str:
    """Apply the migrations and seed users; returns how to log in."""
    from flask_migrate import upgrade
    from sqlalchemy import func, select

    from portal import create_app
    from portal.extensions import db
    from portal.models import Level, User
    from portal.services.auth import create_user

    app = create_app({"INSTANCE_PATH": str(instance), "GRADER_PUBLIC_KEY": grader_public_key})
    with app.app_context():
        upgrade()
        if demo:
            # The demo's users are trusted: its node runs their code as local processes.
            for username, level in (("demo", Level.TRUSTED), ("admin", Level.ADMIN)):
                user = db.session.scalar(select(User).where(User.username == username))
                if user is None:
                    create_user(username, username, level=level)
                else:
                    user.level = level.value
                    db.session.commit()
            from portal.demo import seed_competition

            seed_competition(grader_public_key)
            return "log in as demo (password demo), or admin (password admin)"
        if db.session.scalar(select(func.count(User.id))) == 0:
            password = secrets.token_urlsafe(12)
            create_user("admin", password, level=Level.ADMIN)
            return f"log in as admin with the password {password} (shown once: change it)"
        return "log in with your account"


# What server processes hold and a node never needs.
SERVER_SECRETS = frozenset(
    {"REDIS_URL", "DATABASE_URL", "PODIUM_SECRET_KEY", "PODIUM_GRADER_KEY_FILE", "PGPASSWORD"}
)


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def choose_runtime(*, demo: bool) -> str:
    """The demo runs its trusted users' code as local processes; a platform open to
    strangers runs sessions in containers where an engine answers."""
    if demo:
        return "local"
    return "docker" if docker_answers() else "local"


BASE_IMAGE = "podium/base:latest"


def ensure_base_image(image: str = BASE_IMAGE, build: list[str] | None = None, client=None) -> bool:
    """The Docker runtime's sessions start from `image`: built here first (once, about
    a minute: debootstrap and `docker build`, no registry) when the engine lacks it.
    Returns True when it had to be built."""
    import docker

    try:
        client = client or docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        raise SystemExit(
            f"podium up: --runtime docker, but no Docker engine answers ({exc.__class__.__name__})"
        ) from None
    try:
        client.images.get(image)
        return False
    except docker.errors.ImageNotFound:
        pass
    print(f"podium up: building {image} for the Docker runtime (once) …", flush=True)
    command = build or [sys.executable, "-m", "nodes.images", "build"]
    if subprocess.run(command, check=False).returncode != 0:
        raise SystemExit(f"podium up: the Docker runtime needs {image}, and building it failed")
    return True


def runtime_warnings(runtime: str, *, demo: bool) -> list[str]:
    if runtime == "docker" or demo:
        return []
    who = (
        "only trusted users' code may run (new accounts cannot run sessions or have "
        "models graded until an administrator makes them trusted with `podium user "
        "set-level USER trusted`)"
        if os.geteuid() == 0
        else "only admin's code may run: an agent that is not root cannot run sessions as "
        "other users, so it runs its operator's alone"
    )
    return [
        f"no Docker engine answers here, so the node runs sessions as local processes: {who}. "
        "Start Docker and `podium image build` to open it to everyone."
    ]


def release_node_name(instance: Path) -> None:
    """This machine's node joins with the join token only when it holds no node token
    of its own (a first start, or an instance from before nodes kept one): a node row
    left under its name would refuse it, so that row is removed first."""
    if (instance / "node" / "node.token").exists():
        return
    from portal import create_app
    from portal.errors import NotFound
    from portal.services import nodes

    name = os.environ.get("PODIUM_NODE_NAME") or socket.gethostname()
    app = create_app({"INSTANCE_PATH": str(instance)})
    with app.app_context(), contextlib.suppress(NotFound):
        nodes.remove_node(name)


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6").prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Stack:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.instance = args.instance.resolve()
        self.host = args.host or ("127.0.0.1" if args.demo else "0.0.0.0")
        self.url = f"http://127.0.0.1:{args.port}"
        self.children: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.restarts: dict[str, list[float]] = {}
        self.redis_server: EmbeddedRedis | None = None
        self.warnings: list[str] = []

    def start_redis(self, password: str) -> str:
        if os.environ.get("REDIS_URL"):
            return os.environ["REDIS_URL"]
        # A password even on loopback: RQ workers run what a job names, so whoever can
        # write to Redis can run code as the node agent.
        self.redis_server = EmbeddedRedis(self.instance / "redis", password=password)
        return self.redis_server.start()

    def spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.commands[name] = (command, env)
        log_file = (self.instance / "logs" / f"{name}.log").open("ab")
        self.children[name] = subprocess.Popen(
            command,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log_file.close()

    def start(self) -> str:
        # Whatever the platform writes (database, logs, keys, artifacts) is private.
        os.umask(0o077)
        secrets_ = ensure_instance(self.instance)
        runtime = self.args.runtime or choose_runtime(demo=self.args.demo)
        if not port_is_free(self.host, self.args.port):
            raise SystemExit(f"podium up: port {self.args.port} is in use; pass --port")
        if runtime == "docker":
            ensure_base_image()
        redis_url = self.start_redis(secrets_["EMBEDDED_REDIS_PASSWORD"])
        os.environ["REDIS_URL"] = redis_url
        self.warnings = runtime_warnings(runtime, demo=self.args.demo)
        login_hint = migrate_and_seed_apart(
            self.instance, demo=self.args.demo, grader_public_key=secrets_["GRADER_PUBLIC_KEY"]
        )
        env = dict(
            {k: v for k, v in os.environ.items() if k != "PODIUM_GRADER_KEY_FILE"},
            PODIUM_GRADER_PUBLIC_KEY=secrets_["GRADER_PUBLIC_KEY"],
            PODIUM_INSTANCE=str(self.instance),
            REDIS_URL=redis_url,
            PODIUM_URL=self.url,
            PYTHONUNBUFFERED="1",
        )
        # Sessions talk to the portal users reach, whichever process answered their node.
        env.setdefault("PODIUM_PUBLIC_URL", self.url)
        # The node agent gets no server credential: it talks to the portal with its own
        # node token, which it gets with the join token the first time.
        node_env = {
            k: v
            for k, v in env.items()
            if k not in SERVER_SECRETS
            and (k.startswith("PODIUM_NODE_") or not k.startswith("PODIUM_"))
        }
        node_env.update(
            PODIUM_NODE_JOIN_TOKEN=secrets_["NODE_JOIN_TOKEN"],
            PODIUM_NODE_WORKDIR=str(self.instance / "node"),
        )
        node_options = ["--runtime", runtime]
        if runtime == "local" and os.geteuid() != 0:
            # It cannot run sessions as other users: only the seeded accounts' sessions.
            node_options += ["--operators", "demo,admin" if self.args.demo else "admin"]
        python = sys.executable
        self.spawn(
            "portal",
            [
                python,
                "-m",
                "gunicorn",
                "--workers",
                str(self.args.workers),
                # gevent workers (portal/gunicorn_config.py): a live leaderboard holds its
                # connection open, and a few hundred of them must not take the threads
                # that answer everything else.
                "--config",
                "python:portal.gunicorn_config",
                "--worker-connections",
                "1000",
                "--bind",
                f"{self.host}:{self.args.port}",
                "--access-logfile",
                "-",
                "portal:create_app(migrations=False)",
            ],
            env,
        )
        # Nodes get a portal process of their own: a heavy read that holds the users'
        # workers (a comparison of a hundred sessions) never delays a heartbeat, after
        # which a node and all its sessions would be declared lost.
        nodes_port = node_port(self.host, self.args.port)
        nodes_url = f"http://127.0.0.1:{nodes_port}"
        self.spawn(
            "portal-nodes",
            [
                python,
                "-m",
                "gunicorn",
                "--workers",
                "1",
                "--config",
                "python:portal.gunicorn_config",
                "--worker-connections",
                "1000",
                "--bind",
                f"{self.host}:{nodes_port}",
                "--access-logfile",
                "-",
                "portal:create_app(nodes_only=True, migrations=False)",
            ],
            env,
        )
        for number in range(1, self.args.schedulers + 1):
            name = "scheduler" if number == 1 else f"scheduler-{number}"
            self.spawn(name, [python, "-m", "scheduler"], env)
        self.spawn(
            "grader",
            [python, "-m", "grader"],
            dict(env, PODIUM_GRADER_KEY_FILE=secrets_["GRADER_KEY_FILE"]),
        )
        self.spawn(
            "node",
            [
                python,
                "-m",
                "nodes",
                "--url",
                nodes_url,
                "--gpus",
                self.args.gpus,
                *node_options,
                # `podium up` leaves nothing behind when it stops.
                "--stop-sessions-on-exit",
            ],
            node_env,
        )
        return login_hint

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_children()
            try:
                if requests.get(self.url + "/api/v1/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise SystemExit(
            f"podium up: not healthy after {timeout:.0f} s; see {self.instance / 'logs'}"
        )

    def check_children(self) -> None:
        """Fail when a part dies while the stack starts."""
        for name, child in self.children.items():
            if child.poll() is not None:
                raise SystemExit(
                    f"podium up: the {name} exited with code {child.returncode}"
                    f"\n{self.log_tail(name)}"
                )

    def log_tail(self, name: str, lines: int = 15) -> str:
        text = (self.instance / "logs" / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def keep_alive(self) -> None:
        """Restart a part that died, as a process supervisor would; give up on one that
        dies over and over. The embedded Redis first, on its own port: every part
        reconnects to it there, and the parts that exited while it was away come back
        once it is."""
        server = self.redis_server
        if server is not None and server.process is not None and server.process.poll() is not None:
            self._count_restart("redis", server.process.returncode, server.log_tail())
            server.start()
        for name, child in list(self.children.items()):
            if child.poll() is None:
                continue
            self._count_restart(name, child.returncode, self.log_tail(name))
            self.spawn(name, *self.commands[name])

    def _count_restart(self, name: str, code: int | None, tail: str) -> None:
        now = time.monotonic()
        recent = [t for t in self.restarts.get(name, []) if now - t < RESTART_WINDOW]
        if len(recent) >= MAX_RESTARTS:
            raise SystemExit(f"podium up: the {name} keeps exiting (code {code})\n{tail}")
        self.restarts[name] = [*recent, now]
        print(
            f"podium up: the {name} exited with code {code}; restarting it",
            file=sys.stderr,
            flush=True,
        )

    def stop(self) -> None:
        order = sorted(self.children, key=lambda name: CHILD_ORDER.index(name.split("-")[0]))
        for name in reversed(order):
            child = self.children[name]
            if child.poll() is not None:
                continue
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if self.redis_server is not None:
            self.redis_server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.migrate_only:  # the supervisor's own child: migrate, seed, say how to log in
        instance = args.instance.resolve()
        hint = migrate_and_seed(
            instance,
            demo=args.demo,
            grader_public_key=os.environ.get("PODIUM_GRADER_PUBLIC_KEY", ""),
        )
        release_node_name(instance)
        print(hint, flush=True)
        return 0
    stack = Stack(args)

    def request_stop(_signum, _frame):
        raise KeyboardInterrupt

    # SIGINT too: a shell script's background job starts with SIGINT ignored.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        login_hint = stack.start()
        stack.wait_healthy()
        for warning in stack.warnings:
            print(f"podium up: WARNING: {warning}", file=sys.stderr, flush=True)
        print(f"Podium is up at {stack.url}/  ({login_hint})", flush=True)
        print(f"  CLI:  podium login --url {stack.url} -u USER --password-stdin", flush=True)
        print(f"  logs: {stack.instance / 'logs'}   stop: Ctrl-C", flush=True)
        while True:
            stack.keep_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nstopping Podium…", flush=True)
        return 0
    except SystemExit as exc:
        print(exc, file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
