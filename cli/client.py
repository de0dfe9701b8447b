"""The REST client behind every `podium` command."""

from __future__ import annotations

from typing import Any

import requests


class CliError(Exception):
    """Printed as one line on stderr; the command exits non-zero."""


class ApiClient:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.api = self.url + "/api/v1"
        self.http = requests.Session()
        self.timeout = timeout
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any):
        try:
            response = self.http.request(method, self.api + path, timeout=self.timeout, **kwargs)
        except requests.ConnectionError:
            raise CliError(f"cannot reach the portal at {self.url}: is it running?") from None
        except requests.Timeout:
            raise CliError(f"the portal at {self.url} did not answer in time") from None
        if response.status_code in ok or response.status_code < 400:
            return response
        raise CliError(error_message(response))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs).json()

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.call("POST", path, **kwargs)
        return response.json() if response.content else None


def error_message(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"the portal answered {response.status_code} {response.reason}"
