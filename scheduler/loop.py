"""The scheduling loop: applies the pure policy and queueing to the database and queues
the starts on each node's own queue of work (`portal/node_work.py`).

A pass (only while this process holds the leader lease): mark nodes whose heartbeats
stopped as lost; reject sessions no node could ever hold, with the reason; admit the
rest (what costs credit needs its payer to have some left); plan with
`scheduler.queueing.plan` (grading first, fairness between users, the configured
policy, `fgd` by default, fed the recent demand, backfill around the head); write each
placement with a conditional update from pending to scheduled plus its Allocation rows
(whose unique key forbids double allocation), and queue the start with a job id
derived from the session (an agent ignores a start it has taken already); tell waiting
sessions why they wait.

While it leads, a second thread does the periodic work beside placement (credits,
stalls, the cluster's samples, e-mail: `scheduler/housekeeping.py`).

Reconciliation, when leadership is taken and every `reconcile_seconds`: a scheduled
session whose start job Redis no longer has is queued again; one whose job ran without
starting it fails with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import replace
from datetime import UTC, timedelta

from flask import Flask
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from nodes import environment
from portal import keys, node_work
from portal.extensions import db
from portal.models import (
    Allocation,
    Node,
    NodeStatus,
    Session,
    SessionDataset,
    SessionKind,
    SessionStatus,
    User,
)
from portal.services import blobs, credits
from portal.services.artifacts import ArtifactStore
from portal.services.lifecycle import finish, transition
from portal.services.nodes import mark_lost_nodes, view_of
from portal.timeutil import utcnow
from scheduler.fragmentation import WINDOW, Demand
from scheduler.housekeeping import Housekeeper
from scheduler.leader import Lease
from scheduler.policy import (
    DEFAULT_POLICY,
    WHOLE,
    Cluster,
    NodeView,
    Placement,
    Request,
    never_fits_reason,
)
from scheduler.queueing import Pending, plan

log = logging.getLogger(__name__)

STARTED_GRACE = timedelta(seconds=30)


class OverCommitted(Exception):
    """A pass would hold more of a GPU than the whole of it: another scheduler placed
    something there since the pass read what was free."""


def node_views(nodes: list[Node]) -> list[NodeView]:
    """What each node has free, from the allocations and the active sessions on it."""
    held: dict[int, dict[int, int]] = defaultdict(dict)  # node -> GPU -> thousandths held
    for node_id, gpu_index, milli in db.session.execute(
        select(Allocation.node_id, Allocation.gpu_index, Allocation.milli)
    ):
        held[node_id][gpu_index] = held[node_id].get(gpu_index, 0) + milli
    used_cpus: dict[int | None, float] = defaultdict(float)
    used_memory: dict[int | None, int] = defaultdict(int)
    for placed_on, cpus, memory_mb in db.session.execute(
        select(Session.node_id, Session.cpus, Session.memory_mb).where(
            Session.status.in_([SessionStatus.SCHEDULED.value, SessionStatus.RUNNING.value]),
            Session.node_id.is_not(None),
        )
    ):
        used_cpus[placed_on] += cpus
        used_memory[placed_on] += memory_mb
    return [
        replace(
            view_of(node, held[node.id]),
            free_cpus=node.cpu_count - used_cpus[node.id],
            free_memory_mb=node.memory_mb - used_memory[node.id],
        )
        for node in nodes
    ]


def _as_dict(rows) -> dict[str, int]:
    # Not dict(rows): a Result has keys(), so dict() would take it for a mapping.
    return {key: value for key, value in rows}


def request_of(session: Session, datasets: frozenset[str] = frozenset()) -> Request:
    return Request(
        gpus=session.gpus,
        cpus=session.cpus,
        memory_mb=session.memory_mb,
        gpu_models=session.gpu_model_set,
        datasets=datasets,
        # Its environment's image when it has one: the node holding it starts at once.
        image=(
            environment.image_tag(session.environment)
            if session.environment
            else environment.normalise(session.image)
        ),
        user=session.user.username,
        trusted=session.user.is_trusted,
        gpu_milli=session.gpu_milli,
        gpu_memory_mb=session.gpu_memory_mb,
    )


def recent_demand() -> Demand:
    """What the last sessions that wanted GPUs asked for, oldest first: the mix the
    `fgd` policy plans for (`scheduler/fragmentation.py`). Sessions that started, and
    those waiting; not those refused or stopped before they ran, which cost nothing to
    make and so would let anyone steer everyone's placements."""
    rows = db.session.execute(
        select(
            Session.gpus,
            Session.cpus,
            Session.memory_mb,
            Session.gpu_models,
            Session.gpu_milli,
            Session.gpu_memory_mb,
        )
        .where(
            or_(Session.gpus > 0, Session.gpu_milli > 0, Session.gpu_memory_mb > 0),
            or_(Session.started_at.is_not(None), Session.status == SessionStatus.PENDING.value),
        )
        .order_by(Session.id.desc())
        .limit(WINDOW)
    ).all()
    demand = Demand()
    for gpus, cpus, memory_mb, models, milli, gpu_memory_mb in reversed(rows):
        demand.observe(
            Request(
                gpus=gpus,
                cpus=cpus,
                memory_mb=memory_mb,
                gpu_models=frozenset(m for m in models.split("|") if m),
                gpu_milli=milli,
                gpu_memory_mb=gpu_memory_mb,
            )
        )
    return demand


def mounted_refs(session_ids: list[int]) -> dict[int, frozenset[str]]:
    """The dataset versions each session mounts, in one query for the whole pass."""
    refs: dict[int, set[str]] = defaultdict(set)
    for session_id, ref in db.session.execute(
        select(SessionDataset.session_id, SessionDataset.ref).where(
            SessionDataset.session_id.in_(session_ids)
        )
    ):
        refs[session_id].add(ref)
    return {session_id: frozenset(found) for session_id, found in refs.items()}


class Scheduler:
    def __init__(
        self,
        app: Flask,
        redis: Redis,
        *,
        lease: Lease | None = None,
        tick_seconds: float = 1.0,
        reconcile_seconds: float = 10.0,
        sweep_seconds: float = 3600.0,
        policy: str = DEFAULT_POLICY,
    ):
        self.app = app
        self.redis = redis
        self.lease = lease
        self.tick_seconds = tick_seconds
        self.reconcile_seconds = reconcile_seconds
        self.sweep_seconds = sweep_seconds
        self.policy = policy
        # The last pass's head and the node held for it: held again while that head
        # waits, so that a reservation does not move from node to node as they drain
        # and neither ever empties. A hint only: a new leader starts without it.
        self.kept: tuple[Hashable, str] | None = None

    # The process ---------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Lead when the lease is ours, stand by warm otherwise."""
        assert self.lease is not None
        keeper = threading.Thread(target=self.lease.keep, args=(stop,), daemon=True)
        keeper.start()
        lease = self.lease
        housekeeper = Housekeeper(self.app, self.redis, lambda: lease.held)
        threading.Thread(
            target=housekeeper.run, args=(stop,), name="housekeeping", daemon=True
        ).start()
        leading, reconciled_at = False, 0.0
        swept_at = time.monotonic()
        while not stop.is_set():
            if not self.lease.held:
                if leading:
                    log.info("standing by")
                leading = False
                stop.wait(0.05)
                continue
            if not leading:
                log.info("leading (%s)", self.lease.holder)
                leading, reconciled_at = True, 0.0
            try:
                self.redis.set(
                    keys.SCHEDULER_HEARTBEAT,
                    self.lease.holder,
                    ex=max(5, int(self.tick_seconds * 5)),
                )
            except RedisError as exc:
                log.warning("Redis unreachable (%s); retrying", exc)
                stop.wait(1.0)
                continue
            with self.app.app_context():
                try:
                    if not reconciled_at:
                        # Taking over: a start the old leader placed but had no time to
                        # queue (it stopped renewing a lease ago) is queued now.
                        self.reconcile(grace=timedelta(milliseconds=self.lease.ttl_ms))
                        reconciled_at = time.monotonic()
                    elif time.monotonic() - reconciled_at >= self.reconcile_seconds:
                        self.reconcile()
                        reconciled_at = time.monotonic()
                    self.run_pass()
                    if time.monotonic() - swept_at >= self.sweep_seconds:
                        swept_at = time.monotonic()
                        self.sweep_store()
                except Exception:
                    log.exception("scheduling pass failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
            # Sleep until the portal asks for a pass, or a tick passes.
            try:
                self.redis.blpop([keys.SCHEDULER_WAKE], timeout=self.tick_seconds)
            except RedisError:
                stop.wait(self.tick_seconds)
        keeper.join(timeout=5)

    # One pass -------------------------------------------------------------------------

    def run_pass(self) -> list[tuple[Session, Placement]]:
        mark_lost_nodes(self.app.config["NODE_LOST_AFTER_SECONDS"])
        registered = list(
            db.session.scalars(
                select(Node).where(Node.status != NodeStatus.REMOVED.value).order_by(Node.name)
            )
        )
        # Whether a session could ever run is judged against every registered node, lost
        # ones too: a node that misses heartbeats for a while must not get sessions
        # rejected for good.
        everything = node_views(registered)
        candidates = [n for n in registered if n.status != NodeStatus.LOST.value]
        live = {n.name for n in candidates}
        schedulable = Cluster.of(v for v in everything if v.name in live)
        pending_sessions = db.session.scalars(
            select(Session)
            .options(selectinload(Session.user))
            .where(Session.status == SessionStatus.PENDING.value)
            .order_by(Session.created_at, Session.id)
        ).all()
        by_id = {s.id: s for s in pending_sessions}
        datasets = mounted_refs(list(by_id))
        waiting: dict[int, str] = {}
        admitted: list[Pending] = []
        rates = credits.Rates.configured()
        for session in pending_sessions:
            request = request_of(session, datasets.get(session.id, frozenset()))
            reason = never_fits_reason(request, everything)
            if reason:
                finish(session, SessionStatus.REJECTED, f"no node could ever run it: it {reason}")
                continue
            if not everything:
                waiting[session.id] = "waiting for a node to join"
            elif short := credits.refusal(session, rates):
                waiting[session.id] = short
            else:
                # A re-run an organiser asked for waits in the organiser's share, not in
                # that of the team whose code it runs.
                share = (
                    credits.payer(session)[0].username
                    if session.kind == SessionKind.REPRODUCTION.value
                    else session.user.username
                )
                admitted.append(
                    Pending(
                        session.id,
                        share,
                        request,
                        session.created_at.timestamp(),
                        grading=session.kind == SessionKind.GRADING.value,
                    )
                )
        if self.policy == "fgd" and any(p.request.wants_gpu for p in admitted):
            schedulable.demand = recent_demand()
        held_gpus, held_sessions = self._holdings()
        decided = plan(
            admitted,
            schedulable,
            held_gpus=held_gpus,
            held_sessions=held_sessions,
            policy=self.policy,
            kept=self.kept,
        )
        self.kept = (decided.head, decided.reserved) if decided.reserved else None
        waiting.update({int(k): why for k, why in decided.waiting.items()})  # type: ignore[call-overload]
        nodes_by_name = {n.name: n for n in candidates}
        placed = []
        for item, placement in decided.placed:
            session = by_id[int(item.key)]  # type: ignore[call-overload]
            if self._record_placement(session, nodes_by_name[placement.node], placement):
                placed.append((session, placement))
        for session_id, reason in waiting.items():
            if by_id[session_id].status_reason != reason:
                transition(by_id[session_id], {SessionStatus.PENDING}, status_reason=reason)
        # One transaction for the pass: a commit per placement would bound the loop by
        # the database's commit rate.
        try:
            if placed:
                self._check_gpus_held(
                    {
                        (nodes_by_name[placement.node].id, index)
                        for _session, placement in placed
                        for index in placement.gpu_indices
                    }
                )
            db.session.commit()
        except (IntegrityError, OverCommitted) as exc:
            # Another writer took one of these GPUs first (a failover in flight): nothing
            # of this pass is kept, and the next pass plans again from what is stored.
            db.session.rollback()
            log.warning("a placement of this pass lost a race (%s); planning again", exc)
            return []
        for session, placement in placed:
            log.info(
                "placed %s on %s (GPUs %s)",
                session.ident,
                placement.node,
                ",".join(map(str, placement.gpu_indices)) or "none",
            )
            self._enqueue_start(session.id, placement.node)
        return placed

    def _check_gpus_held(self, taken: set[tuple[int, int]]) -> None:
        """Lock the rows of the nodes this pass placed on (node id, GPU index taken): a
        second scheduler's pass waits here until this one commits. Then check that no
        GPU it took is held past the whole of it, counting what others committed since
        this pass read the allocations (PostgreSQL's default READ COMMITTED: each
        statement sees what was committed before it; SQLite lets one writer at a time).
        The lock is FOR NO KEY UPDATE, which the key-share locks that inserting rows
        referring to a node take do not wait for (a node's GPU rows are made anew each
        time its agent registers, so they would be no lock)."""
        nodes = sorted({node_id for node_id, _index in taken})
        db.session.execute(
            select(Node.id)
            .where(Node.id.in_(nodes))
            .order_by(Node.id)
            .with_for_update(key_share=True)
        ).all()
        for node_id, gpu_index, milli in db.session.execute(
            select(Allocation.node_id, Allocation.gpu_index, func.sum(Allocation.milli))
            .where(Allocation.node_id.in_(nodes))
            .group_by(Allocation.node_id, Allocation.gpu_index)
        ):
            if (node_id, gpu_index) in taken and milli > WHOLE:
                raise OverCommitted(f"GPU {gpu_index} of node {node_id} would be held {milli}/1000")

    def _holdings(self) -> tuple[dict[str, float], dict[str, int]]:
        """GPUs (shares as fractions), and active placed sessions, held by each user: the
        fair share's measure. The sessions the platform runs for a user (grading,
        reproductions) are not theirs to count."""
        milli = _as_dict(
            db.session.execute(
                select(User.username, func.sum(Allocation.milli))
                .join(Session, Session.user_id == User.id)
                .join(Allocation, Allocation.session_id == Session.id)
                .where(Session.kind == SessionKind.TRAINING.value)
                .group_by(User.username)
            )
        )
        sessions = _as_dict(
            db.session.execute(
                select(User.username, func.count(Session.id))
                .join(Session, Session.user_id == User.id)
                .where(
                    Session.status.in_(
                        [SessionStatus.SCHEDULED.value, SessionStatus.RUNNING.value]
                    ),
                    Session.kind == SessionKind.TRAINING.value,
                )
                .group_by(User.username)
            )
        )
        return {user: held / WHOLE for user, held in milli.items()}, sessions

    def _record_placement(self, session: Session, node: Node, placement: Placement) -> bool:
        """Pending to scheduled, once: a conditional update, so that a second scheduler
        (a failover in flight) cannot place the same session again. Not committed."""
        moved = transition(
            session,
            {SessionStatus.PENDING},
            status=SessionStatus.SCHEDULED.value,
            status_reason=f"starting on {node.name}",
            node_id=node.id,
            gpu_indices=",".join(str(i) for i in placement.gpu_indices),
            scheduled_at=utcnow(),
        )
        if not moved:
            log.warning("session %s was placed by another scheduler", session.id)
            return False
        db.session.add_all(
            Allocation(
                session_id=session.id,
                node_id=node.id,
                gpu_index=index,
                milli=placement.gpu_milli or WHOLE,
            )
            for index in placement.gpu_indices
        )
        return True

    def _enqueue_start(self, session_id: int, node_name: str) -> None:
        node_work.push(
            self.redis,
            node_name,
            node_work.START,
            job_id=node_work.start_job_id(session_id),
            session_id=session_id,
        )

    def sweep_store(self) -> None:
        """Collect the artifact store's blobs that nothing names (the leader does it,
        now and then: uploads never used, replaced checkpoints, refused archives)."""
        deleted = blobs.sweep(ArtifactStore(self.app.config["ARTIFACT_ROOT"]))
        if deleted:
            log.info("deleted %d stored files that nothing uses", len(deleted))

    # Reconciliation ---------------------------------------------------------------------

    def reconcile(self, grace: timedelta = STARTED_GRACE) -> None:
        """Make Redis agree with the database, the source of truth. Sessions scheduled
        within `grace` are left alone: their start may still be on its way."""
        stale = db.session.scalars(
            select(Session).where(
                Session.status == SessionStatus.SCHEDULED.value,
                Session.scheduled_at < utcnow() - grace,
            )
        ).all()
        for session, node in db.session.execute(
            select(Session, Node)
            .join(Node, Session.node_id == Node.id)
            .where(
                Node.status == NodeStatus.REMOVED.value,
                Session.status.in_([SessionStatus.SCHEDULED.value, SessionStatus.RUNNING.value]),
            )
        ).all():
            # Placed on a node while it was being removed.
            finish(session, SessionStatus.LOST, f"node {node.name} was removed")
        for session in stale:
            state = node_work.state(self.redis, node_work.start_job_id(session.id))
            restarted = (
                state is not None
                and state["state"] == node_work.TAKEN
                and session.node is not None
                and session.node.registered_at.replace(tzinfo=UTC).timestamp()
                > state.get("taken_at", 0)
            )
            if state is None or restarted:
                why = "its agent restarted before starting it" if restarted else "Redis had lost it"
                log.warning("re-queueing the start of %s: %s", session.ident, why)
                self._enqueue_start(session.id, session.node.name if session.node else "")
            elif state["state"] == node_work.DONE:
                finish(
                    session,
                    SessionStatus.FAILED,
                    f"node {session.node.name if session.node else '?'} took its start "
                    "but never ran it",
                )
