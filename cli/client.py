"""The REST client behind every `podium` command."""

from __future__ import annotations

from typing import Any

import requests

from cli.envelope import error_message
from cli.transport import http_session


class CliError(Exception):
    """Printed as one line on stderr; the command exits non-zero."""


class ApiClient:
    def __init__(self, url: str, token: str | None = None, *, timeout: float = 60.0):
        if not url.startswith(("http://", "https://")):
            raise CliError(f"the portal's URL must start with http:// or https:// (got {url!r})")
        self.url = url.rstrip("/")
        self.api = self.url + "/api/v1"
        self.http = http_session()
        self.timeout = timeout
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any):
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.http.request(method, self.api + path, **kwargs)
        except requests.ConnectionError:
            raise CliError(f"cannot reach the portal at {self.url}: is it running?") from None
        except requests.Timeout:
            raise CliError(f"the portal at {self.url} did not answer in time") from None
        except requests.RequestException as exc:
            raise CliError(f"cannot talk to {self.url}: {exc}") from None
        if response.status_code in ok or response.status_code < 400:
            return response
        raise CliError(error_message(response))

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._json(self.call("GET", path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.call("POST", path, **kwargs)
        return self._json(response) if response.content else None

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise CliError(f"{self.url} does not answer like a Podium portal") from None
