"""Where the client keeps its login: $PODIUM_HOME (default ~/.config/podium), mode 0600."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Credentials:
    url: str
    token: str
    username: str


def home() -> Path:
    return Path(os.environ.get("PODIUM_HOME") or Path.home() / ".config" / "podium")


def credentials_path() -> Path:
    return home() / "credentials.json"


def load() -> Credentials | None:
    try:
        data = json.loads(credentials_path().read_text())
        return Credentials(url=data["url"], token=data["token"], username=data["username"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(credentials: Credentials) -> Path:
    folder = home()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = credentials_path()
    # Created with 0600 from the start: the token is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(credentials), out)
    os.chmod(path, 0o600)
    return path


def forget() -> None:
    credentials_path().unlink(missing_ok=True)
