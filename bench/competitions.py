"""Competition benchmarks: leaderboard reads, grading throughput, live-board fan-out.

Builds a throwaway instance (SQLite, embedded Redis) with one competition, N teams and
M scored submissions, starts the portal as `podium up` does (gunicorn, 2 gevent
workers) on 127.0.0.1, and prints one JSON document:
- leaderboard_api: the first read (the cache rebuilt from the database), then GET
  /api/v1/competitions/SLUG/leaderboard?limit=50 from C clients, open loop (1 request
  per second per client) and closed loop (back to back), latency percentiles in ms;
- grading: `grader.jobs.process` over K submissions of 10,000 rows, in this process;
- live_board: B server-sent-event listeners on the round's stream; per new best score,
  the seconds until the first and until every listener got the new version, the API's
  latency while they stay connected, and (with Chromium) one real browser's update.

    .venv/bin/python bench/competitions.py [--teams 10000] [--submissions 1000000]
        [--clients 200] [--browsers 200] [--quick]

The load generators and listeners run in child processes (the portal has the same
cores); every child is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import re
import secrets
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLUG = "bench"
TEST_ROWS = 10_000
CLASSES = 3
CHROMIUM = "/usr/bin/chromium"


def percentiles(values: list[float]) -> dict:
    """Latency summary in milliseconds."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)

    def at(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 2)

    return {
        "count": len(ordered),
        "p50_ms": at(0.50),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


# Child roles -----------------------------------------------------------------------------


def loadgen(url: str, clients: int, seconds: float, rate: float) -> dict:
    """C clients GET `url`: `rate` requests/s each (open loop), or back to back if 0."""
    import requests

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    late = [0] * clients
    start = time.monotonic() + 1.0
    stop = start + seconds

    def client(index: int) -> None:
        session = requests.Session()
        period = 1.0 / rate if rate else 0.0
        next_at = start + (index / clients) * period
        if not rate:
            time.sleep(max(0.0, start - time.monotonic()))
        while True:
            if rate:
                if next_at >= stop:
                    break
                wait = next_at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -0.01:
                    late[index] += 1
                next_at += period
            elif time.monotonic() >= stop:
                break
            began = time.perf_counter()
            try:
                response = session.get(url, timeout=30)
                ok = response.status_code == 200 and b'"rows"' in response.content
            except requests.RequestException:
                ok = False
            if ok:
                latencies[index].append(time.perf_counter() - began)
            else:
                errors[index] += 1
        session.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [x for per in latencies for x in per]
    return {
        "clients": clients,
        "seconds": seconds,
        "mode": f"open loop, {rate:g} req/s per client" if rate else "closed loop",
        "requests_per_s": round(len(everything) / seconds, 1),
        "errors": sum(errors),
        "late_sends": sum(late),
        **percentiles(everything),
    }


def listen(host: str, port: int, path: str, count: int) -> None:
    """Hold `count` SSE connections; print `ready` once each got the board, then on
    `stop` (stdin) print, per listener, the time each version was first seen."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    ).encode()
    pattern = re.compile(rb"id: (\d+)\n")
    selector = selectors.DefaultSelector()
    buffers: list[bytes] = [b""] * count
    seen: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    for index in range(count):
        sock = socket.create_connection((host, port))
        sock.sendall(request)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, index)
    selector.register(sys.stdin, selectors.EVENT_READ, -1)
    ready = False
    while True:
        for key, _ in selector.select(timeout=1.0):
            index = key.data
            if index == -1:
                if sys.stdin.readline().strip() in ("stop", ""):
                    print(json.dumps(seen), flush=True)
                    return
                continue
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            now = time.time()
            if not data:
                selector.unregister(key.fileobj)
                continue
            buffer = buffers[index] + data
            end = 0
            for match in pattern.finditer(buffer):
                version = int(match.group(1))
                if not seen[index] or version > seen[index][-1][0]:
                    seen[index].append((version, now))
                end = match.end()
            buffers[index] = buffer[end:][-64:]
        if not ready and all(seen):
            ready = True
            print("ready", flush=True)


# The instance --------------------------------------------------------------------------


def competition_files() -> dict[str, bytes]:
    rng = random.Random(1)
    ids = [f"r{i:05d}" for i in range(TEST_ROWS)]
    labels = [rng.randrange(CLASSES) for _ in ids]
    inputs = "id,x\n" + "".join(f"{i},{rng.random():.4f}\n" for i in ids)
    truth = "id,label\n" + "".join(f"{i},{y}\n" for i, y in zip(ids, labels, strict=True))
    return {"test.csv": inputs.encode(), "labels.csv": truth.encode()}


def predictions(files: dict[str, bytes], rng: random.Random) -> bytes:
    """Right on a random share of the rows."""
    share = rng.random()
    out = ["id,prediction"]
    for line in files["labels.csv"].decode().splitlines()[1:]:
        ident, label = line.split(",")
        out.append(f"{ident},{label if rng.random() < share else (int(label) + 1) % CLASSES}")
    return ("\n".join(out) + "\n").encode()


def populate(app, teams: int, submissions: int, files: dict[str, bytes]) -> dict:
    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import CompetitionTeam, Level, Submission
    from portal.services import auth
    from portal.services.artifacts import ArtifactStore
    from portal.services.competitions import specs

    started = time.perf_counter()
    with app.app_context():
        organiser = auth.create_user("organiser", "organiser-password", level=Level.ORGANISER)
        now = datetime.now(UTC)
        spec = {
            "slug": SLUG,
            "title": "Bench",
            "team_size_limit": 2,
            "rounds": [
                {
                    "name": "Round 1",
                    "starts_at": now - timedelta(days=6),
                    "ends_at": now + timedelta(days=5),
                    "test_inputs": "test.csv",
                    "labels": "labels.csv",
                    "metric": "accuracy",
                    "public_fraction": 0.5,
                }
            ],
        }
        store = ArtifactStore(app.config["ARTIFACT_ROOT"])
        competition = specs.create(organiser, spec, files, store, app.config["GRADER_PUBLIC_KEY"])
        round_ = competition.rounds[0]
        info = {
            "competition_id": competition.id,
            "round_id": round_.id,
            "revision": round_.revision,
            "organiser_id": organiser.id,
        }
        connection = db.session.connection()
        moment = now.replace(tzinfo=None)
        connection.execute(
            insert(CompetitionTeam.__table__),
            [
                {
                    "competition_id": competition.id,
                    "name": f"team-{n:06d}",
                    "invite_code": secrets.token_hex(12),
                    "disqualified_reason": "",
                    "created_at": moment - timedelta(days=6),
                }
                for n in range(teams)
            ],
        )
        db.session.commit()
        team_ids = list(
            db.session.scalars(
                db.select(CompetitionTeam.id).where(
                    CompetitionTeam.competition_id == competition.id
                )
            )
        )
        rng = random.Random(2)
        span = 5 * 24 * 3600.0
        batch = 50_000
        connection = db.session.connection()
        for first in range(0, submissions, batch):
            rows = []
            for _ in range(min(batch, submissions - first)):
                created = moment - timedelta(seconds=rng.random() * span)
                rows.append(
                    {
                        "round_id": round_.id,
                        "team_id": rng.choice(team_ids),
                        "user_id": organiser.id,
                        "source": "file",
                        "session_ref": "",
                        "predictions_digest": "",
                        "status": "scored",
                        "error": "",
                        "public_score": rng.random() * 0.9,
                        "private_score": rng.random() * 0.9,
                        "scored_revision": round_.revision,
                        "selected": False,
                        "disqualified_reason": "",
                        "memo": "",
                        "created_at": created,
                        "scored_at": created + timedelta(seconds=5),
                    }
                )
            connection.execute(insert(Submission.__table__), rows)
        db.session.commit()
        db.session.remove()
    info["team_ids"] = team_ids
    info["populate_s"] = round(time.perf_counter() - started, 2)
    return info


def log_problems(path: Path) -> list[str]:
    """Critical lines and worker timeouts of gunicorn's log, and each traceback's last
    line (the exception), so that a problem reads without the log."""
    problems, in_traceback, last, where = [], False, "", ""
    for line in path.read_text(errors="replace").splitlines():
        if "[CRITICAL]" in line or "WORKER TIMEOUT" in line:
            problems.append(line)
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line.lstrip().startswith("File "):
            where = line.strip()
        elif in_traceback and line and not line.startswith((" ", "\t")):
            problems.append(f"traceback: {line} ({where})")
            in_traceback = False
        last = line
    if in_traceback:
        problems.append(f"traceback: {last}")
    return problems


# The portal ------------------------------------------------------------------------------


class Children:
    """Every process this script starts, stopped (process group and all) at the end."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen] = []

    def start(self, command: list[str], **kwargs) -> subprocess.Popen:
        process = subprocess.Popen(command, start_new_session=True, **kwargs)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            self.stop(process)


def child(children: Children, *args: str, stdin: bool = False) -> subprocess.Popen:
    return children.start(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


def run_load(children: Children, url: str, clients: int, seconds: float, rate: float) -> dict:
    process = child(
        children,
        "--role=loadgen",
        f"--url={url}",
        f"--clients={clients}",
        f"--seconds={seconds}",
        f"--rate={rate}",
    )
    out, _ = process.communicate(timeout=seconds + 120)
    return json.loads(out)


def wait_http(url: str, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# Measurements ----------------------------------------------------------------------------


def grading(app, redis, info: dict, files: dict[str, bytes], count: int) -> dict:
    from sqlalchemy import insert

    from grader import jobs
    from portal.extensions import db
    from portal.models import Submission
    from portal.services.artifacts import ArtifactStore

    rng = random.Random(3)
    with app.app_context():
        store = ArtifactStore(app.config["ARTIFACT_ROOT"])
        rows = []
        for _ in range(count):
            data = predictions(files, rng)
            digest, _ = store.put(io.BytesIO(data), max_bytes=len(data) + 1)
            rows.append(
                {
                    "round_id": info["round_id"],
                    "team_id": rng.choice(info["team_ids"]),
                    "user_id": info["organiser_id"],
                    "source": "file",
                    "session_ref": "",
                    "predictions_digest": digest,
                    "status": "scoring",
                    "error": "",
                    "selected": False,
                    "disqualified_reason": "",
                    "memo": "",
                    "created_at": datetime.now(UTC).replace(tzinfo=None),
                }
            )
        result = db.session.execute(insert(Submission.__table__).returning(Submission.id), rows)
        ids = [row[0] for row in result]
        db.session.commit()
        db.session.remove()
    with app.app_context():
        times = []
        statuses: dict[str, int] = {}
        started = time.perf_counter()
        for submission_id in ids:
            began = time.perf_counter()
            status = jobs.process(submission_id, redis, store)
            times.append(time.perf_counter() - began)
            statuses[status] = statuses.get(status, 0) + 1
            db.session.remove()
        total = time.perf_counter() - started
    return {
        "submissions": count,
        "rows_each": TEST_ROWS,
        "metric": "accuracy",
        "seconds": round(total, 3),
        "submissions_per_s": round(count / total, 1),
        "submissions_per_s_after_first": round((count - 1) / (total - times[0]), 1)
        if count > 1
        else None,
        "first_s": round(times[0], 4),
        "per_submission": percentiles(times),
        "statuses": statuses,
        "goal_submissions_per_s": 100,
    }


def publish(app, redis, info: dict, team_id: int, score: float) -> tuple[float, int]:
    """A new best score, as `grader.jobs.process` announces it: (t0, version)."""
    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import Submission
    from portal.services.competitions import boards

    with app.app_context():
        created = datetime.now(UTC).replace(tzinfo=None)
        result = db.session.execute(
            insert(Submission.__table__).returning(Submission.id),
            [
                {
                    "round_id": info["round_id"],
                    "team_id": team_id,
                    "user_id": info["organiser_id"],
                    "source": "file",
                    "session_ref": "",
                    "predictions_digest": "",
                    "status": "scored",
                    "error": "",
                    "public_score": score,
                    "private_score": score,
                    "scored_revision": info["revision"],
                    "selected": False,
                    "disqualified_reason": "",
                    "memo": "",
                    "created_at": created,
                    "scored_at": created,
                }
            ],
        )
        submission_id = result.all()[0][0]
        db.session.commit()
        db.session.remove()
    board = boards.Board(redis, info["round_id"], True)
    t0 = time.time()
    board.offer(team_id, submission_id, score, created)
    version = board.changed()
    return t0, version


def live_board(
    app, redis, info: dict, children: Children, port: int, listeners: int, trials: int, api: str
) -> dict:
    path = f"/competitions/{SLUG}/rounds/1/leaderboard/stream"
    process = child(
        children,
        "--role=listen",
        f"--port={port}",
        f"--path={path}",
        f"--browsers={listeners}",
        stdin=True,
    )
    assert process.stdout is not None and process.stdin is not None
    began = time.perf_counter()
    line = process.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"the listeners did not start: {line!r}")
    connected_s = time.perf_counter() - began
    rng = random.Random(4)
    published = []
    for trial in range(trials):
        team_id = rng.choice(info["team_ids"])
        published.append(publish(app, redis, info, team_id, 1.0 + (trial + 1) / 1000))
        time.sleep(1.0)
    under_load = run_load(children, api, clients=10, seconds=8, rate=10)
    process.stdin.write("stop\n")
    process.stdin.flush()
    seen = json.loads(process.stdout.readline())
    children.stop(process)
    firsts, alls, missed = [], [], 0
    for t0, version in published:
        arrivals = []
        for events in seen:
            when = next((t for v, t in events if v >= version), None)
            if when is None:
                missed += 1
            else:
                arrivals.append(when - t0)
        if arrivals:
            firsts.append(min(arrivals))
            alls.append(max(arrivals))
    return {
        "listeners": listeners,
        "connect_all_s": round(connected_s, 3),
        "trials": trials,
        "missed_deliveries": missed,
        "first_listener_s": {
            "median": round(statistics.median(firsts), 4),
            "max": round(max(firsts), 4),
        },
        "all_listeners_s": {
            "median": round(statistics.median(alls), 4),
            "max": round(max(alls), 4),
        },
        "api_while_listeners_connected": under_load,
    }


def browser(app, redis, info: dict, base: str, trials: int = 5) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM_FLAGS

    rng = random.Random(5)
    times = []
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = chromium.new_page()
            page.goto(f"{base}/competitions/{SLUG}/rounds/1/leaderboard")
            page.wait_for_function(
                "document.getElementById('live-state').textContent === 'live'", timeout=30_000
            )
            page.evaluate(
                """() => {
                  window.__tops = [];
                  const body = document.querySelector('#leaderboard tbody');
                  new MutationObserver(() => {
                    const cell = body.querySelector('tr td:nth-child(2)');
                    window.__tops.push([cell ? cell.textContent : '', Date.now()]);
                  }).observe(body, {childList: true});
                }"""
            )
            for trial in range(trials):
                team_id = rng.choice(info["team_ids"])
                with app.app_context():
                    from portal.extensions import db
                    from portal.models import CompetitionTeam

                    name = db.session.get(CompetitionTeam, team_id).name
                    db.session.remove()
                t0, _ = publish(app, redis, info, team_id, 2.0 + (trial + 1) / 1000)
                page.wait_for_function(
                    "name => document.querySelector('#leaderboard tbody tr td:nth-child(2)')"
                    ".textContent === name",
                    arg=name,
                    timeout=30_000,
                    polling=5,
                )
                tops = page.evaluate("window.__tops")
                shown = next(t for n, t in tops if n == name) / 1000
                times.append(shown - t0)
                time.sleep(1.0)
        finally:
            chromium.close()
    return {
        "trials": trials,
        "median": round(statistics.median(times), 4),
        "max": round(max(times), 4),
        "note": "t0 just before Board.offer to the table's first row showing the team "
        "(MutationObserver timestamp in the page)",
    }


def main(args: argparse.Namespace) -> dict:
    import requests
    from flask_migrate import upgrade
    from redis import Redis

    from portal import create_app
    from portal.ports import free_port
    from portal.redis_server import EmbeddedRedis
    from portal.services import sealing

    if args.quick:
        teams, submissions, clients, listeners, graded = 500, 20_000, 50, 20, 100
        open_s, closed_s, trials = 10.0, 5.0, 10
    else:
        teams, submissions, clients, listeners, graded = (
            args.teams,
            args.submissions,
            args.clients,
            args.browsers,
            300,
        )
        open_s, closed_s, trials = 20.0, 10.0, 20
    result: dict = {
        "sizes": {
            "teams": teams,
            "scored_submissions": submissions,
            "clients": clients,
            "sse_listeners": listeners,
            "graded_submissions": graded,
            "test_rows": TEST_ROWS,
        },
        "cpus": os.cpu_count(),
    }
    children = Children()
    with tempfile.TemporaryDirectory(prefix="podium-bench-") as folder:
        root = Path(folder)
        instance = root / "instance"
        instance.mkdir()
        key_file = root / "grader.key"
        public_key = sealing.new_secret_key(key_file)
        os.environ["PODIUM_GRADER_KEY_FILE"] = str(key_file)
        secret = secrets.token_hex(32)
        with EmbeddedRedis(root / "redis") as server:
            try:
                app = create_app(
                    {
                        "INSTANCE_PATH": str(instance),
                        "SECRET_KEY": secret,
                        "REDIS_URL": server.url,
                        "GRADER_PUBLIC_KEY": public_key,
                        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{instance / 'podium.db'}",
                        "ARTIFACT_ROOT": str(instance / "artifacts"),
                    }
                )
                with app.app_context():
                    upgrade()
                files = competition_files()
                info = populate(app, teams, submissions, files)
                result["populate_s"] = info["populate_s"]

                port = free_port()
                base = f"http://127.0.0.1:{port}"
                env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
                env.update(
                    PODIUM_INSTANCE=str(instance),
                    PODIUM_SECRET_KEY=secret,
                    PODIUM_GRADER_PUBLIC_KEY=public_key,
                    REDIS_URL=server.url,
                )
                env.pop("PODIUM_GRADER_KEY_FILE", None)
                log = (root / "portal.log").open("wb")
                children.start(
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "--workers",
                        "2",
                        "--worker-class",
                        "gevent",
                        "--worker-connections",
                        "1000",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--access-logfile",
                        "-",
                        "wsgi:app",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
                log.close()
                wait_http(f"{base}/api/v1/openapi.json")
                api = f"{base}/api/v1/competitions/{SLUG}/leaderboard?limit=50"
                began = time.perf_counter()
                first = requests.get(api, timeout=120)
                rebuild = time.perf_counter() - began
                first.raise_for_status()
                began = time.perf_counter()
                requests.get(api, timeout=30).raise_for_status()
                warm = time.perf_counter() - began
                result["leaderboard_api"] = {
                    "cache_rebuild_s": round(rebuild, 3),
                    "second_request_ms": round(warm * 1000, 2),
                    "board_total": first.json()["total"],
                    "open_loop": run_load(children, api, clients, open_s, 1.0),
                    "closed_loop": run_load(children, api, clients, closed_s, 0.0),
                    "goal": "p99 <= 50 ms, 10,000 teams, 1,000,000 scored submissions, 200 clients",
                }
                redis = Redis.from_url(server.url)
                result["grading"] = grading(app, redis, info, files, graded)
                result["live_board"] = live_board(
                    app, redis, info, children, port, listeners, trials, api
                )
                if Path(CHROMIUM).exists():
                    try:
                        result["live_board"]["browser_update_s"] = browser(app, redis, info, base)
                    except Exception as exc:
                        result["live_board"]["browser_update_s"] = {"error": repr(exc)}
                else:
                    result["live_board"]["browser_update_s"] = {"error": f"no {CHROMIUM}"}
                redis.close()
                result["portal_log_problems"] = log_problems(root / "portal.log")[:10]
            finally:
                children.stop_all()
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--submissions", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--browsers", type=int, default=200, help="SSE listeners")
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--role", choices=("main", "loadgen", "listen"), default="main")
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.role == "loadgen":
        print(
            json.dumps(loadgen(arguments.url, arguments.clients, arguments.seconds, arguments.rate))
        )
    elif arguments.role == "listen":
        listen("127.0.0.1", arguments.port, arguments.path, arguments.browsers)
    else:
        # `timeout` or Ctrl-C: unwind, so the finally blocks stop every child.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        print(json.dumps(main(arguments), indent=2))
