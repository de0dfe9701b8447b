"""The people of bench/load.py, for locust: browsers reading leaderboards, sessions and
datasets; teams submitting predictions at a steady rate; sessions reporting scalars with
their own session tokens, as the SDK does. What they act on (tokens, sessions, the
competition) comes from the JSON file named by PODIUM_LOAD_SETUP."""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
from pathlib import Path

from locust import HttpUser, between, constant_throughput, task

SETUP = json.loads(Path(os.environ["PODIUM_LOAD_SETUP"]).read_text())
SLUG = SETUP["slug"]
_next = itertools.count()
_lock = threading.Lock()


def _take(items: list):
    with _lock:
        return items[next(_next) % len(items)]


class Browser(HttpUser):
    """A researcher or spectator clicking about, every one to three seconds."""

    weight = 1
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {_take(SETUP['browser_tokens'])}"}

    @task(4)
    def leaderboard(self) -> None:
        self.client.get(f"/api/v1/competitions/{SLUG}/leaderboard", name="api leaderboard")

    @task(2)
    def leaderboard_page(self) -> None:
        self.client.get(f"/competitions/{SLUG}", name="page competition")

    @task(2)
    def sessions(self) -> None:
        self.client.get("/api/v1/sessions?all=false", headers=self.headers, name="api sessions")

    @task(2)
    def one_session(self) -> None:
        ident = random.choice(SETUP["sessions"])["ident"]
        self.client.get(f"/api/v1/sessions/{ident}", headers=self.headers, name="api session")
        self.client.get(
            f"/api/v1/sessions/{ident}/scalars?tag=loss&points=500",
            headers=self.headers,
            name="api scalars",
        )

    @task(2)
    def datasets(self) -> None:
        self.client.get("/api/v1/datasets", headers=self.headers, name="api datasets")
        self.client.get("/datasets", name="page datasets")


class Submitter(HttpUser):
    """A team sending a predictions file once a second (fixed_count of them)."""

    fixed_count = int(os.environ.get("PODIUM_LOAD_SUBMITTERS", "20"))
    wait_time = constant_throughput(1)

    def on_start(self) -> None:
        self.headers = {
            "Authorization": f"Bearer {_take(SETUP['submitter_tokens'])}",
            "Content-Type": "text/csv",
        }

    @task
    def submit(self) -> None:
        body = random.choice(SETUP["predictions"]).encode()
        with self.client.post(
            f"/api/v1/competitions/{SLUG}/submissions",
            data=body,
            headers=self.headers,
            name="api submit",
            catch_response=True,
        ) as response:
            if response.status_code == 201:
                response.success()
                with open(os.environ["PODIUM_LOAD_SUBMITTED"], "a") as out:
                    out.write(f"{response.json()['id']}\n")


class Reporter(HttpUser):
    """A running session's SDK: a batch of ten scalars a second, with its own token."""

    fixed_count = int(os.environ.get("PODIUM_LOAD_REPORTERS", "50"))
    wait_time = constant_throughput(1)

    def on_start(self) -> None:
        self.session = _take(SETUP["sessions"])
        self.headers = {"Authorization": f"Bearer {self.session['token']}"}
        self.step = 0

    @task
    def report(self) -> None:
        self.step += 1
        scalars = {
            f"metric{n}": {"step": [self.step], "value": [random.random()], "wall_time": [0.0]}
            for n in range(9)
        }
        scalars["loss"] = {"step": [self.step], "value": [1 / self.step], "wall_time": [0.0]}
        self.client.post(
            f"/api/v1/sessions/{self.session['ident']}/events",
            json={"scalars": scalars},
            headers=self.headers,
            name="api report",
        )
