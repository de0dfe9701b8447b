"""Reading the portal's error envelope, `{"error": {"code", "message", "details"}}`
(`portal/errors.py` writes it): the one parser the CLI, the SDK and the node agent
share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the SDK imports this module inside sessions: keep it light
    import requests


@dataclass
class PortalRefusal:
    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def refusal(response: requests.Response) -> PortalRefusal:
    """The error a response carries; for an answer that is not Podium's envelope (a
    proxy's page, say), its status and reason, or the start of its text."""
    try:
        error = response.json()["error"]
        return PortalRefusal(
            response.status_code,
            str(error.get("code") or ""),
            str(error["message"]),
            error.get("details") or {},
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        text = response.text.strip()[:200] if response.text else ""
        return PortalRefusal(
            response.status_code,
            "",
            text or f"the portal answered {response.status_code} {response.reason}",
        )


def error_message(response: requests.Response) -> str:
    return refusal(response).message
