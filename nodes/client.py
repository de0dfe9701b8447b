"""The agent's HTTP client for the portal's internal API."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import requests

from cli.envelope import error_message
from cli.transport import http_session

log = logging.getLogger(__name__)


class PortalError(RuntimeError):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class PortalClient:
    def __init__(self, base_url: str, *, timeout: float = 30.0):
        self.api = base_url.rstrip("/") + "/api/v1"
        self.http = http_session()
        self.timeout = timeout
        self.node_token: str | None = None

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if self.node_token:
            headers["Authorization"] = f"Bearer {self.node_token}"
        kwargs.setdefault("timeout", self.timeout)
        response = self.http.request(method, self.api + path, headers=headers, **kwargs)
        if response.status_code >= 400:
            message = error_message(response)
            raise PortalError(
                f"{method} {path}: {response.status_code} {message}", response.status_code
            )
        return response

    def register(
        self,
        join_token: str,
        name: str,
        hostname: str,
        runtime: str,
        inventory: dict[str, Any],
        *,
        operators: list[str] | None = None,
        wait_seconds: float = 60.0,
    ) -> dict[str, Any]:
        """Register, retrying while the portal is still starting: with the node token
        it holds already (`node_token`), else with the cluster's join token."""
        deadline = time.monotonic() + wait_seconds
        payload = {
            "join_token": "" if self.node_token else join_token,
            "name": name,
            "hostname": hostname,
            "runtime": runtime,
            "operators": operators or [],
            **inventory,
        }
        while True:
            try:
                body = self._call("POST", "/internal/nodes/register", json=payload).json()
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                continue
            self.node_token = body["node_token"]
            return body

    def heartbeat(
        self,
        sample: dict[str, Any],
        running: list[int],
        images: list[str] | None = None,
        datasets: list[str] | None = None,
        environments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        payload = {
            "sample": sample,
            "running": running,
            "images": images,
            "datasets": datasets,
            "environments": environments,
        }
        return self._call("POST", "/internal/nodes/heartbeat", json=payload).json()

    def take_work(self, wait: float) -> list[dict[str, Any]]:
        """This node's next jobs, waiting up to `wait` seconds for one."""
        answer = self._call(
            "POST", "/internal/nodes/work", json={"wait": wait}, timeout=wait + self.timeout
        )
        return answer.json()["jobs"]

    def job_done(self, job_id: str, result: dict[str, Any]) -> None:
        self._call("POST", f"/internal/nodes/work/{job_id}/result", json={"result": result})

    def session_spec(self, session_id: int) -> dict[str, Any]:
        return self._call("GET", f"/internal/sessions/{session_id}/spec").json()

    def _download(self, path: str, destination: Path) -> None:
        response = self._call("GET", path, stream=True)
        with destination.open("wb") as out:
            for chunk in response.iter_content(1024 * 1024):
                out.write(chunk)

    def download_code(self, digest: str, destination: Path) -> None:
        self._download(f"/internal/code/{digest}", destination)

    def download_inputs(self, session_id: int, destination: Path) -> None:
        self._download(f"/internal/sessions/{session_id}/inputs", destination)

    def upload_predictions(self, session_id: int, body: bytes) -> None:
        self._call(
            "PUT",
            f"/internal/sessions/{session_id}/predictions",
            data=body,
            headers={"Content-Type": "text/csv"},
        )

    def download_dataset(self, digest: str, destination: Path) -> None:
        self._download(f"/internal/datasets/{digest}", destination)

    def report_state(
        self, session_id: int, status: str, *, exit_code: int | None = None, reason: str = ""
    ) -> None:
        self._call(
            "POST",
            f"/internal/sessions/{session_id}/state",
            json={"status": status, "exit_code": exit_code, "reason": reason},
        )

    def ship_scalars(self, session_id: int, body: dict[str, Any]) -> None:
        self._call("POST", f"/internal/sessions/{session_id}/scalars", json=body)

    def ship_resources(self, session_id: int, samples: list[dict[str, Any]]) -> None:
        self._call("POST", f"/internal/sessions/{session_id}/resources", json={"samples": samples})

    def ship_logs(self, session_id: int, lines: list[dict[str, Any]]) -> None:
        self._call("POST", f"/internal/sessions/{session_id}/logs", json={"lines": lines})
