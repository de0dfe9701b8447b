"""The HTTP session the `podium` command and the node agent talk to the portal with."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

# A kept-alive connection the portal closes while it idles (gunicorn keeps one 2 s) can
# be reused at the very moment it closes, and the request meets a reset: requests that
# change nothing are sent again on a new connection, and any request whose connection
# could not even be opened.
RETRY = Retry(
    total=3,
    connect=3,
    read=2,
    status=0,
    other=0,
    allowed_methods=frozenset({"GET", "HEAD", "OPTIONS"}),
    backoff_factor=0.1,
    raise_on_status=False,
)


def http_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=RETRY)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
