"""Monitoring, credits and alerts at the service level: resource samples stored as the
platform's series, the ledger charged while sessions run and enforced at zero,
notifications and their e-mail through a real SMTP server."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from portal import node_work
from portal.errors import ApiError
from portal.extensions import db
from portal.models import CreditEntry, Notification, SessionStatus, SessionUsage
from portal.services import alerts, credits, metrics, monitoring
from portal.services.lifecycle import finish, mark_running
from portal.timeutil import utcnow
from scheduler.loop import Scheduler
from tests import factories


def running(owner, redis, app, *, gpus=0, cpus=1.0, started_ago=timedelta(0)):
    """A session placed by the scheduler and marked running `started_ago`."""
    session = factories.session(owner, gpus=gpus, cpus=cpus)
    Scheduler(app, redis).run_pass()
    assert session.state is SessionStatus.SCHEDULED, session.status_reason
    mark_running(session)
    session.started_at = utcnow() - started_ago
    db.session.commit()
    return session


# Monitoring ---------------------------------------------------------------------------


def test_samples_become_the_platforms_series_and_a_batch_sent_again_is_stored_once(app, redis):
    ada = factories.user("ada")
    factories.node("n", gpus=2)
    run = running(ada, redis, app, gpus=2)
    samples = [
        {
            "t": second,
            "cpu_percent": 50.0 + second,
            "memory_mb": 100.0 * second,
            "gpus": [
                {"index": 0, "utilization_percent": 90, "memory_used_mb": 1000, "power_w": 200.5},
                {"index": 1, "utilization_percent": 30, "memory_used_mb": 3000},
            ],
        }
        for second in (5, 10, 15)
    ]
    assert monitoring.record(run, samples) == 3
    assert monitoring.record(run, samples) == 0  # sent again: nothing new
    assert monitoring.record(run, [*samples[1:], {**samples[0], "t": 20}]) == 1
    usage = db.session.get(SessionUsage, run.id)
    assert usage.samples == 4 and usage.gpu_samples == 4
    assert usage.gpu_utilization == pytest.approx(60.0)
    assert (usage.gpu_memory_peak_mb, usage.memory_peak_mb) == (3000, 1500)
    history = monitoring.history(run)
    assert history["series"]["gpu0/utilization"] == {"t": [5, 10, 15, 20], "value": [90.0] * 4}
    assert history["series"]["gpu0/power_w"]["value"] == [200.5] * 4
    assert history["series"]["cpu_percent"]["value"] == [55.0, 60.0, 65.0, 55.0]
    assert history["average_gpu_utilization"] == pytest.approx(60.0)
    # The platform's series are not the session's scalars: not listed, followed or
    # compared as such, and a session cannot write them.
    assert metrics.tags(run) == []
    assert metrics.after(run, 0)[0] == []
    with pytest.raises(ApiError, match="platform's"):
        metrics.record(
            run,
            {"scalars": {"podium/cpu_percent": {"step": [99], "value": [0.0], "wall_time": [0.0]}}},
        )
    assert history["series"]["cpu_percent"]["t"][-1] == 20


def test_samples_of_gpus_the_session_does_not_hold_or_malformed_are_refused(app, redis):
    ada = factories.user("ada")
    factories.node("n", gpus=2)
    run = running(ada, redis, app, gpus=1)
    for bad in (
        [{"t": 1, "gpus": [{"index": 1, "utilization_percent": 5}]}],  # not its GPU
        [{"t": "soon"}],
        [{"t": 1, "memory_mb": float("nan")}],
        [{"t": 1, "cpu_percent": "lots"}],
        "samples",
    ):
        with pytest.raises(ApiError):
            monitoring.record(run, bad)
        db.session.rollback()
    assert db.session.get(SessionUsage, run.id) is None
    assert metrics.tags(run, reserved=True) == []


def test_a_week_of_samples_is_a_few_rows(app, redis):
    """7 days at a sample every 5 s: 120,960 samples a series, in batches of 3 as the
    agent ships them would be 40,320 requests; here in batches of 2,016 (one request
    per 2.8 hours) to keep the test short. The rows stay few: chunks are merged."""
    from portal.models import ScalarChunk

    ada = factories.user("ada")
    factories.node("n", gpus=1)
    run = running(ada, redis, app, gpus=1)
    per_batch = 2016
    for batch in range(120_960 // per_batch):
        monitoring.record(
            run,
            [
                {
                    "t": 5 * (batch * per_batch + i),
                    "cpu_percent": 10.0,
                    "memory_mb": 200.0,
                    "gpus": [{"index": 0, "utilization_percent": 75, "memory_used_mb": 900}],
                }
                for i in range(per_batch)
            ],
        )
    chunks = db.session.query(ScalarChunk).filter_by(session_id=run.id).count()
    assert chunks <= 4 * metrics.MERGE_AFTER  # 4 series
    line = monitoring.history(run, points=600)["series"]["gpu0/utilization"]
    assert len(line["t"]) <= 1300 and line["t"][-1] == 5 * (120_960 - 1)


def test_cluster_samples_count_allocated_and_busy_real_gpus(app, redis):
    ada = factories.user("ada")
    node, _ = factories.node("n", gpus=4)
    for gpu in node.gpus:
        gpu.simulated = False
    db.session.commit()
    running(ada, redis, app, gpus=2)
    node.sample = {
        "gpus": [
            {"index": 0, "utilization_percent": 95},
            {"index": 1, "utilization_percent": 20},
            {"index": 2, "utilization_percent": 99},
        ]
    }  # 2 is not allocated
    db.session.commit()
    sample = monitoring.record_cluster_sample()
    assert (sample.gpus, sample.gpus_allocated, sample.gpus_reporting, sample.gpus_busy) == (
        4,
        2,
        2,
        1,
    )
    history = monitoring.cluster_history("1h")
    assert history["allocated"] == [0.5] and history["busy"] == [0.5]
    with pytest.raises(ApiError):
        monitoring.cluster_history("forever")


def test_user_averages_are_over_the_last_100_sessions_and_private_but_to_admins(app, redis):
    ada, bob = factories.user("ada"), factories.user("bob")
    root = factories.user("root", admin=True)
    factories.node("n", gpus=1)
    for owner, utilisations in ((ada, [10.0] * 5 + [90.0] * 100), (bob, [40.0])):
        for value in utilisations:
            session = factories.session(owner)
            db.session.add(
                SessionUsage(
                    session_id=session.id, samples=1, gpu_samples=1, gpu_utilization_sum=value
                )
            )
            db.session.commit()
            finish(session, SessionStatus.STOPPED, "done")  # ends: its average counts
    finish(factories.session(bob), SessionStatus.STOPPED, "no samples")  # nothing to count
    everyone = {row["user"]: row for row in monitoring.user_averages(root)}
    assert everyone["ada"]["average_gpu_utilization"] == 90.0  # the 5 oldest fell out
    assert everyone["ada"]["sessions"] == 100 and everyone["bob"]["sessions"] == 1
    assert [row["user"] for row in monitoring.user_averages(bob)] == ["bob"]


def test_gpustat_names_the_holding_session_to_its_owner_and_admins_only(app, redis):
    ada, bob = factories.user("ada"), factories.user("bob")
    root = factories.user("root", admin=True)
    factories.node("n", gpus=2)
    held = running(ada, redis, app, gpus=1)
    seen = {viewer.username: monitoring.gpustat(viewer)[0] for viewer in (ada, bob, root)}
    assert seen["ada"]["session"] == held.ident == seen["root"]["session"]
    assert seen["bob"]["session"] is None and seen["bob"]["user"] == "ada"
    assert monitoring.gpustat(bob)[1]["user"] is None


# Credits ------------------------------------------------------------------------------


def test_running_sessions_are_charged_each_interval_once_on_one_line_an_hour(app, redis):
    ada = factories.user("ada")
    factories.node("n", gpus=2)
    run = running(ada, redis, app, gpus=2, started_ago=timedelta(hours=2))
    start = run.started_at
    assert credits.charge_running(start + timedelta(minutes=15)) == 1
    assert credits.charge_running(start + timedelta(minutes=15)) == 0  # charged already
    assert ada.credit == pytest.approx(99.5)  # 2 GPUs for 15 minutes
    credits.charge_running(start + timedelta(minutes=30))
    lines = db.session.query(CreditEntry).filter_by(user_id=ada.id).all()
    assert len(lines) == 1 and lines[0].gpu_hours == pytest.approx(1.0)  # one line so far
    assert lines[0].amount == pytest.approx(-1.0) and lines[0].balance_after == pytest.approx(99)
    # An hour later, a new line; the end charges the rest, once.
    credits.charge_running(start + timedelta(minutes=100))
    finish(run, SessionStatus.COMPLETED, exit_code=0)
    charged = sum(e.gpu_hours for e in db.session.query(CreditEntry).filter_by(user_id=ada.id))
    hours = (run.ended_at - start).total_seconds() / 3600
    assert charged == pytest.approx(2 * hours, rel=1e-6)
    assert db.session.get(type(ada), ada.id).credit == pytest.approx(100 - 2 * hours)
    # A line collects the charges of the hour after it began: [0, 30], [30, 100], [100, end].
    assert db.session.query(CreditEntry).filter_by(user_id=ada.id).count() == 3


def test_cpu_hours_cost_at_their_rate_and_free_sessions_are_never_held(app, redis):
    ada = factories.user("ada")
    factories.node("n", gpus=0, cpus=8)
    ada.credit = 0
    db.session.commit()
    free = factories.session(ada, cpus=2)
    Scheduler(app, redis).run_pass()
    assert free.state is SessionStatus.SCHEDULED  # CPUs cost nothing by default
    app.config["CREDIT_CPU_HOUR"] = 0.5
    paid = factories.session(ada, cpus=2)
    Scheduler(app, redis).run_pass()
    assert paid.state is SessionStatus.PENDING and "out of credit" in paid.status_reason


def test_grading_is_paid_by_the_competitions_organiser(app, redis, client):
    import io
    import json

    from portal.models import Checkpoint, Competition
    from portal.services.competitions import submissions

    organiser, ada = factories.user("org"), factories.user("ada")
    spec = factories.competition_spec()
    data = {"spec": json.dumps(spec)}
    data.update(
        {name: (io.BytesIO(body), name) for name, body in factories.competition_files().items()}
    )
    created = client.post(
        "/api/v1/competitions",
        data=data,
        headers=factories.headers(factories.token(organiser)),
        content_type="multipart/form-data",
    )
    assert created.status_code == 201, created.get_json()
    competition = db.session.query(Competition).one()
    factories.node("n", gpus=2)
    trained = factories.session(ada, gpus=1)
    db.session.add(Checkpoint(session_id=trained.id, name="final", digest="0" * 64, size=1))
    db.session.commit()
    grading = db.session.get(
        type(trained),
        submissions.submit_session(ada, competition, trained.ident, None).grading_session_id,
    )
    assert credits.payer(grading) == (organiser, competition)
    organiser.credit = 0
    db.session.commit()
    Scheduler(app, redis).run_pass()
    assert grading.status_reason == "waiting: the grading budget of toy is spent"
    organiser.credit = 10
    db.session.commit()
    Scheduler(app, redis).run_pass()
    assert mark_running(grading)
    grading.started_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    credits.charge_running()
    # Grading takes a quarter of a GPU (GRADING_GPU_SHARE), where the training had one.
    assert grading.gpus == 0 and grading.gpu_milli == 250
    assert ada.credit == 100 and organiser.credit == pytest.approx(9.75, abs=1e-3)
    entry = db.session.query(CreditEntry).filter_by(user_id=organiser.id).one()
    assert entry.competition_id == competition.id and "for toy" in entry.reason


def test_at_zero_sessions_are_told_to_checkpoint_then_stopped_out_of_credit(app, redis):
    ada = factories.user("ada")
    factories.node("n", gpus=2)
    saving = running(ada, redis, app, gpus=1)
    plain = running(ada, redis, app, gpus=1)
    saving.saves_on_signal = True
    ada.credit = 0.001
    db.session.commit()
    node_work.take(redis, "n")  # the starts
    credits.charge_running(utcnow() + timedelta(minutes=5))
    assert ada.credit < 0
    now = utcnow()
    assert credits.enforce(redis, now) == []
    assert saving.credit_stop_at == now + timedelta(seconds=300)
    jobs = node_work.take(redis, "n")
    assert [(j["kind"], j["session_id"]) for j in jobs] == [("checkpoint", saving.id)]
    [warned] = db.session.query(Notification).filter_by(kind="credit_warning").all()
    assert warned.subject == f"Out of credit: {saving.ident}, {plain.ident} stop soon"
    # Nothing new that costs credit starts meanwhile.
    waiting = factories.session(ada, gpus=1)
    Scheduler(app, redis).run_pass()
    assert waiting.state is SessionStatus.PENDING
    # After the grace: stopped, and the node reports the end with the reason.
    stopped = credits.enforce(redis, now + timedelta(seconds=301))
    assert {s.id for s in stopped} == {saving.id, plain.id}
    assert saving.stop_requested and saving.stop_reason == credits.OUT_OF_CREDIT
    assert {j["kind"] for j in node_work.take(redis, "n")} == {"stop"}
    finish(saving, SessionStatus.STOPPED, saving.stop_reason)
    told = db.session.query(Notification).filter_by(kind="session_out_of_credit").one()
    assert told.subject == f"Session {saving.ident} stopped: out of credit"


def test_credit_granted_during_the_grace_calls_the_stop_off(app, redis):
    ada, root = factories.user("ada"), factories.user("root", admin=True)
    factories.node("n", gpus=1)
    run = running(ada, redis, app, gpus=1)
    ada.credit = -1
    db.session.commit()
    now = utcnow()
    credits.enforce(redis, now)
    assert run.credit_stop_at is not None
    entry = credits.grant(ada, 5, actor=root, reason="more")
    assert entry.balance_after == 4 and entry.kind == "grant"
    assert credits.enforce(redis, now + timedelta(hours=1)) == []
    assert run.credit_stop_at is None and not run.stop_requested


def test_grants_and_refunds_refuse_bad_amounts_and_others_sessions(app, redis):
    ada, bob = factories.user("ada"), factories.user("bob")
    root = factories.user("root", admin=True)
    bobs = factories.session(bob)
    for amount in (-1, 0, float("nan"), float("inf"), "5", True, 2e9):
        with pytest.raises(ApiError, match="positive number"):
            credits.grant(ada, amount, actor=root)
    with pytest.raises(ApiError):
        credits.refund(ada, 1, actor=root, session=bobs)
    assert db.session.query(CreditEntry).count() == 0 and ada.credit == 100
    refund = credits.refund(bob, 2.5, actor=root, session=bobs, reason="node failure")
    assert (refund.kind, refund.session_ident, refund.balance_after) == (
        "refund",
        bobs.ident,
        102.5,
    )
    assert [e["kind"] for e in credits.ledger_dicts(credits.ledger(bob))] == ["refund"]


# Alerts -------------------------------------------------------------------------------


class Inbox:
    """A real SMTP server on loopback (aiosmtpd), keeping what it receives; with
    `refuse`, it refuses every recipient (550)."""

    def __init__(self, port: int | None = None):
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Message

        self.messages: list = []
        self.refuse = False
        inbox = self

        class Keep(Message):
            async def handle_RCPT(self, server, session, envelope, address, options):
                if inbox.refuse:
                    return "550 no such mailbox"
                envelope.rcpt_tos.append(address)
                return "250 OK"

            def handle_message(self, message):
                inbox.messages.append(message)

        import socket

        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.controller = Controller(Keep(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        self.controller.stop()


@pytest.fixture
def inbox(app):
    box = Inbox()
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=box.port, MAIL_FROM="podium@example.org")
    yield box
    box.stop()


def test_a_failed_session_is_told_in_the_portal_and_by_mail(app, redis, inbox):
    ada = factories.user("ada")
    ada.email = "ada@example.org"
    bob = factories.user("bob")
    bob.email = "bob@example.org"
    bob.email_alerts = False
    db.session.commit()
    factories.node("n")
    failing, done, quiet = (running(owner, redis, app) for owner in (ada, ada, bob))
    finish(failing, SessionStatus.FAILED, "exited with code 1", exit_code=1)
    finish(done, SessionStatus.COMPLETED, exit_code=0)  # nothing to tell
    finish(quiet, SessionStatus.KILLED, "out of memory")
    assert alerts.unread(ada) == 1 and alerts.unread(bob) == 1
    assert alerts.send_pending() == 1
    deadline = time.monotonic() + 5
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    [message] = inbox.messages
    assert message["To"] == "ada@example.org" and message["From"] == "podium@example.org"
    assert message["Subject"] == f"[Podium] Session {failing.ident} failed"
    assert "exited with code 1" in message.get_payload()
    assert "podium resume" in message.get_payload()
    assert alerts.send_pending() == 0  # sent once
    assert alerts.mark_read(ada) == 1 and alerts.unread(ada) == 0
    with pytest.raises(ApiError):
        alerts.mark_read(ada, [alerts.listed(bob)[0].id])  # bob's: not found


def test_mail_waits_for_an_unreachable_server_and_gives_up_on_a_refusing_one(app, redis):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    app.config.update(SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_TIMEOUT_SECONDS=2)
    ada = factories.user("ada")
    ada.email = "ada@example.org"
    db.session.commit()
    factories.node("n")
    finish(running(ada, redis, app), SessionStatus.LOST, "node n stopped answering")
    for _ in range(alerts.MAIL_ATTEMPTS + 2):
        assert alerts.send_pending() == 0
    notification = db.session.query(Notification).one()
    assert notification.email_state == alerts.PENDING  # it waits for the server
    # The server is back: it goes, once.
    box = Inbox(port)
    try:
        assert alerts.send_pending() == 1
        assert alerts.send_pending() == 0
        db.session.refresh(notification)
        assert notification.email_state == alerts.SENT
        # A server that refuses the recipient: tried a few times, then given up.
        box.refuse = True
        finish(running(ada, redis, app), SessionStatus.FAILED, "exited with code 2")
        for _ in range(alerts.MAIL_ATTEMPTS):
            assert alerts.send_pending() == 0
        refused = db.session.query(Notification).order_by(Notification.id.desc()).first()
        assert refused.email_state == alerts.FAILED and "550" in refused.email_error
        assert alerts.unread(ada) == 2  # the portal still has both
    finally:
        box.stop()


def test_a_quiet_session_is_flagged_stalled_once_and_unflagged_when_it_speaks(app, redis):
    from portal.models import LogLine

    ada = factories.user("ada")
    factories.node("n")
    run = running(ada, redis, app, started_ago=timedelta(minutes=20))
    run.stall_minutes = 10
    db.session.add(
        LogLine(
            session_id=run.id, seq=0, text="epoch 1", created_at=utcnow() - timedelta(minutes=15)
        )
    )
    db.session.commit()
    assert alerts.flag_stalled() == [run]
    assert alerts.flag_stalled() == []  # told once
    assert run.stalled_at is not None
    [told] = alerts.listed(ada)
    assert told.kind == "session_stalled" and "15 minutes" in told.body
    metrics.record(
        run, {"scalars": {"loss": {"step": [1], "value": [0.5], "wall_time": [time.time()]}}}
    )
    alerts.flag_stalled()
    assert run.stalled_at is None
