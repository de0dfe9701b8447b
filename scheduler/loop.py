"""The scheduling loop: applies the pure policy to the database and queues the starts.

One pass: mark nodes whose heartbeats stopped as lost, then walk the pending sessions
in arrival order. A session no node could ever hold is rejected with the reason; one
that fits somewhere now is placed by best fit (its GPUs written as Allocation rows,
whose unique key forbids double allocation) and its start queued on that node's own
RQ queue; the rest wait, with the reason shown to their owners.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace

from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import Allocation, Node, NodeStatus, Session, SessionStatus
from portal.queue import SCHEDULER_HEARTBEAT_KEY, SCHEDULER_WAKE_KEY, node_queue_name
from portal.services.lifecycle import finish
from portal.services.nodes import mark_lost_nodes
from portal.timeutil import utcnow
from scheduler.policy import NodeView, Placement, Request, best_fit, never_fits_reason

log = logging.getLogger(__name__)


def node_views(nodes: list[Node]) -> list[NodeView]:
    """What each node has free, from the allocations and the active sessions on it."""
    held: dict[int, set[int]] = {}
    for node_id, gpu_index in db.session.execute(select(Allocation.node_id, Allocation.gpu_index)):
        held.setdefault(node_id, set()).add(gpu_index)
    used_cpus: dict[int | None, float] = {}
    used_memory: dict[int | None, int] = {}
    for placed_on, cpus, memory_mb in db.session.execute(
        select(Session.node_id, Session.cpus, Session.memory_mb).where(
            Session.status.in_([SessionStatus.SCHEDULED.value, SessionStatus.RUNNING.value]),
            Session.node_id.is_not(None),
        )
    ):
        used_cpus[placed_on] = used_cpus.get(placed_on, 0.0) + cpus
        used_memory[placed_on] = used_memory.get(placed_on, 0) + memory_mb
    return [
        NodeView(
            name=node.name,
            total_gpus=len(node.gpus),
            free_gpus=tuple(g.index for g in node.gpus if g.index not in held.get(node.id, ())),
            total_cpus=float(node.cpu_count),
            free_cpus=node.cpu_count - used_cpus.get(node.id, 0.0),
            total_memory_mb=node.memory_mb,
            free_memory_mb=node.memory_mb - used_memory.get(node.id, 0),
        )
        for node in nodes
    ]


def waiting_reason(request: Request) -> str:
    return (
        f"waiting for a node with {request.gpus} free GPUs, {request.cpus:g} CPUs and "
        f"{request.memory_mb} MiB"
    )


class Scheduler:
    def __init__(self, app: Flask, redis: Redis, *, tick_seconds: float = 1.0):
        self.app = app
        self.redis = redis
        self.tick_seconds = tick_seconds

    def run(self, stop: threading.Event) -> None:
        log.info("scheduler started")
        while not stop.is_set():
            self.redis.set(SCHEDULER_HEARTBEAT_KEY, "1", ex=max(5, int(self.tick_seconds * 5)))
            with self.app.app_context():
                try:
                    self.run_pass()
                except Exception:
                    log.exception("scheduling pass failed")
                    db.session.rollback()
                finally:
                    db.session.remove()
            # Sleep until the portal asks for a pass, or a tick passes.
            self.redis.blpop([SCHEDULER_WAKE_KEY], timeout=self.tick_seconds)

    def run_pass(self) -> list[tuple[Session, Placement]]:
        mark_lost_nodes(self.app.config["NODE_LOST_AFTER_SECONDS"])
        candidates = list(
            db.session.scalars(
                select(Node).where(Node.status != NodeStatus.LOST.value).order_by(Node.name)
            )
        )
        everything = node_views(candidates)
        ready_names = {n.name for n in candidates if n.status == NodeStatus.READY.value}
        views = {v.name: v for v in everything if v.name in ready_names}
        nodes_by_name = {n.name: n for n in candidates}
        placed = []
        pending = db.session.scalars(
            select(Session)
            .where(Session.status == SessionStatus.PENDING.value)
            .order_by(Session.created_at, Session.id)
        ).all()
        for session in pending:
            request = Request(gpus=session.gpus, cpus=session.cpus, memory_mb=session.memory_mb)
            reason = never_fits_reason(request, everything)
            if reason:
                finish(session, SessionStatus.REJECTED, f"no node could ever run it: it {reason}")
                continue
            placement = best_fit(request, views.values())
            if placement is None:
                reason = waiting_reason(request) if everything else "waiting for a node to join"
                if session.status_reason != reason:
                    session.status_reason = reason
                    db.session.commit()
                continue
            if self._commit_placement(session, nodes_by_name[placement.node], placement):
                view = views[placement.node]
                views[placement.node] = replace(
                    view,
                    free_gpus=tuple(i for i in view.free_gpus if i not in placement.gpu_indices),
                    free_cpus=view.free_cpus - request.cpus,
                    free_memory_mb=view.free_memory_mb - request.memory_mb,
                )
                placed.append((session, placement))
        for session, placement in placed:
            self._enqueue_start(session.id, placement.node)
        return placed

    def _commit_placement(self, session: Session, node: Node, placement: Placement) -> bool:
        session.status = SessionStatus.SCHEDULED.value
        session.status_reason = f"starting on {node.name}"
        session.node_id = node.id
        session.gpu_indices = ",".join(str(i) for i in placement.gpu_indices)
        session.scheduled_at = utcnow()
        db.session.add_all(
            Allocation(session_id=session.id, node_id=node.id, gpu_index=index)
            for index in placement.gpu_indices
        )
        try:
            db.session.commit()
        except IntegrityError:
            # Another writer took one of these GPUs first; the next pass sees it.
            db.session.rollback()
            log.warning("placement of %s on %s lost a race", session.id, node.name)
            return False
        log.info("placed %s on %s (GPUs %s)", session.ident, node.name, session.gpu_indices)
        return True

    def _enqueue_start(self, session_id: int, node_name: str) -> None:
        Queue(node_queue_name(node_name), connection=self.redis).enqueue(
            "nodes.jobs.start_session",
            session_id,
            job_id=f"start-{session_id}",
            result_ttl=3600,
            failure_ttl=86400,
        )
