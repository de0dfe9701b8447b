"""The node agent against the portal over real HTTP on loopback, running a real process,
with a fault injected where the network fails (its client): one failed report never
leaves a session unwatched."""

from __future__ import annotations

import io
import threading
import time

import pytest
import requests
from werkzeug.serving import make_server

from nodes.agent import Agent
from nodes.client import PortalClient
from nodes.probe import Nvml, ResourceProbe
from nodes.runtime import get_runtime
from portal.api.code import artifact_store
from portal.extensions import db
from portal.models import LogLine, Session
from portal.services import sessions as session_service
from scheduler.loop import Scheduler
from tests import factories
from tests.api.test_api import code_archive
from tests.conftest import JOIN_TOKEN


@pytest.fixture
def served(app):
    """The test portal, served over HTTP on loopback."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


class ResetOnce(PortalClient):
    """The first report that a session runs meets a connection reset (as gunicorn's
    keep-alive, as long as the heartbeat period, makes happen by itself)."""

    def __init__(self, base_url: str):
        super().__init__(base_url)
        self.reset = False

    def report_state(self, session_id: int, status: str, **kwargs) -> None:
        if status == "running" and not self.reset:
            self.reset = True
            raise requests.ConnectionError("('Connection aborted.', ConnectionResetError(104))")
        super().report_state(session_id, status, **kwargs)


def test_a_session_whose_running_report_failed_is_watched_to_its_end(app, served, redis, tmp_path):
    owner = factories.user("ada")
    script = "import time\nprint('started', flush=True)\ntime.sleep(3)\nprint('done')\n"
    digest, size = artifact_store().put(
        io.BytesIO(code_archive({"main.py": script})), max_bytes=2**20
    )
    client = ResetOnce(served)
    agent = Agent(
        client,
        get_runtime("local"),
        ResourceProbe(Nvml()),
        name="n",
        workdir=tmp_path / "node",
        heartbeat_seconds=0.3,
    )
    agent.register(JOIN_TOKEN)
    agent.start_background()
    try:
        session = session_service.create_session(
            owner,
            session_service.SessionRequest(entry="main.py", code_digest=digest, code_bytes=size),
        )
        Scheduler(app, redis).run_pass()
        assert agent.start_session(session.id)
        assert client.reset
        deadline = time.monotonic() + 30
        while True:
            db.session.expire_all()
            found = db.session.get(Session, session.id)
            if found.status not in ("scheduled", "running"):
                break
            assert time.monotonic() < deadline, f"it stayed {found.status}"
            time.sleep(0.2)
        # Watched all along: it ran (the next heartbeat said so), its output was read,
        # and its end reported.
        assert (found.status, found.exit_code) == ("completed", 0)
        assert found.started_at is not None
        lines = db.session.scalars(
            db.select(LogLine.text).where(LogLine.session_id == session.id)
        ).all()
        assert "started" in lines and "done" in lines
        # Its folder on the node (code, outputs) goes once the end is reported.
        folder = tmp_path / "node" / "sessions" / str(session.id)
        deadline = time.monotonic() + 10
        while folder.exists():
            assert time.monotonic() < deadline, "the session's folder stayed on the node"
            time.sleep(0.1)
    finally:
        agent.shutdown()
