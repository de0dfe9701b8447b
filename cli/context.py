"""The portal a command talks to, as the stored login gives it."""

from __future__ import annotations

from cli import config
from cli.client import ApiClient, CliError


def client() -> ApiClient:
    credentials = config.load()
    if credentials is None:
        raise CliError("not logged in: run `podium login --url URL -u USER`")
    return ApiClient(credentials.url, credentials.token)


def client_or_anonymous() -> ApiClient:
    """Logged in if possible; else anonymous, on the last portal used or PODIUM_URL."""
    credentials = config.load()
    if credentials is not None:
        return ApiClient(credentials.url, credentials.token)
    import os

    url = os.environ.get("PODIUM_URL")
    if not url:
        raise CliError("no portal: log in with `podium login --url URL`, or set PODIUM_URL")
    return ApiClient(url)
