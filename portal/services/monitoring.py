"""What sessions and the cluster use: resource samples, GPU status, the dashboard.

A node samples each session it runs every few seconds (`nodes/monitor.py`). The
samples are stored as the platform's own scalar series of the session (tags under
`metrics.RESERVED`, step = seconds since it started), so they are compressed, summarised
and downsampled exactly as reported scalars are (a week at a sample every 5 s is
120,960 points a tag, a few chunk rows and a summary), and a `session_usage` row keeps
the totals that averages are read from. A sample whose second is not after the last one
stored is a batch sent again, and is dropped.

The scheduler records the cluster's state once a minute (`record_cluster_sample`): the
dashboard reads those rows, bucketed to its width, and per user the average GPU
utilisation of their last 100 sessions that reported one.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from portal.errors import ApiError
from portal.extensions import db
from portal.models import (
    Allocation,
    ClusterSample,
    Gpu,
    Node,
    NodeStatus,
    Session,
    SessionUsage,
    User,
    UserUsage,
)
from portal.models.session import PLATFORM_KINDS
from portal.services import metrics
from portal.timeutil import utcnow

PREFIX = metrics.RESERVED
CPU_TAG = PREFIX + "cpu_percent"
MEMORY_TAG = PREFIX + "memory_mb"
GPU_FIELDS = {
    # sample key: (tag suffix, label)
    "utilization_percent": ("utilization", "GPU utilisation (%)"),
    "memory_used_mb": ("memory_mb", "GPU memory used (MiB)"),
    "temperature_c": ("temperature_c", "temperature (°C)"),
    "power_w": ("power_w", "power (W)"),
}
BUSY_PERCENT = 80
USER_WINDOW = 100  # a user's average is over their last this many sessions
MAX_SAMPLES = 5000


def gpu_tag(index: int, field: str) -> str:
    return f"{PREFIX}gpu{index}/{GPU_FIELDS[field][0]}"


class InvalidSamples(ApiError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_input", status=422)


MAX_READING = 1e12  # MiB, percent, watts: anything larger is not a reading


def _number(value: Any, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not -MAX_READING <= value <= MAX_READING  # before isfinite: 10**400 overflows
        or not math.isfinite(value)
    ):
        raise InvalidSamples(f"{what} must be a number between ±{MAX_READING:g}")
    return float(value)


# Writing -----------------------------------------------------------------------------


def record(session: Session, samples: Any) -> int:
    """Store a node's samples of a session; returns how many were new."""
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise InvalidSamples(f"samples is a list of at most {MAX_SAMPLES}")
    held = set(session.gpu_index_list)
    usage = db.session.get(SessionUsage, session.id, with_for_update=True)
    if usage is None:
        usage = SessionUsage(session_id=session.id, last_second=-1)
        db.session.add(usage)
    columns: dict[str, dict[str, list]] = defaultdict(
        lambda: {"step": [], "value": [], "wall_time": []}
    )
    now = utcnow()
    wall = time.time()
    last = usage.last_second if usage.last_second is not None else -1
    fresh = 0
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict) or not isinstance(sample.get("t"), int):
            raise InvalidSamples(f"samples[{index}] needs t, whole seconds since it started")
        second = sample["t"]
        if second <= last:
            continue  # sent before
        last = second
        fresh += 1

        def put(tag: str, value: float, second: int = second) -> None:
            column = columns[tag]
            column["step"].append(second)
            column["value"].append(value)
            column["wall_time"].append(wall)

        memory = _number(sample.get("memory_mb", 0), f"samples[{index}].memory_mb")
        put(MEMORY_TAG, memory)
        usage.memory_peak_mb = max(usage.memory_peak_mb or 0, int(memory))
        if "cpu_percent" in sample:
            cpu = _number(sample["cpu_percent"], f"samples[{index}].cpu_percent")
            put(CPU_TAG, cpu)
            usage.cpu_percent_sum = (usage.cpu_percent_sum or 0.0) + cpu
        gpus = sample.get("gpus") or []
        if not isinstance(gpus, list):
            raise InvalidSamples(f"samples[{index}].gpus must be a list")
        utilisations = []
        for reading in gpus:
            gpu = reading.get("index") if isinstance(reading, dict) else None
            if gpu not in held:
                raise InvalidSamples(f"samples[{index}]: GPU {gpu!r} is not one it holds")
            for field in GPU_FIELDS:
                if field in reading:
                    put(gpu_tag(gpu, field), _number(reading[field], f"GPU {gpu} {field}"))
            if "utilization_percent" in reading:
                utilisations.append(float(reading["utilization_percent"]))
            if "memory_used_mb" in reading:
                usage.gpu_memory_peak_mb = max(
                    usage.gpu_memory_peak_mb or 0, int(reading["memory_used_mb"])
                )
        if utilisations:
            usage.gpu_samples = (usage.gpu_samples or 0) + 1
            usage.gpu_utilization_sum = (usage.gpu_utilization_sum or 0.0) + sum(
                utilisations
            ) / len(utilisations)
    if not fresh:
        db.session.rollback()
        return 0
    usage.samples = (usage.samples or 0) + fresh
    usage.last_second = last
    usage.last_sample_at = now
    metrics.record(session, {"scalars": dict(columns)}, reserved=True)  # commits both
    return fresh


def record_cluster_sample(at: int | None = None) -> ClusterSample:
    """The cluster's state now (`at`: seconds since the epoch), from the nodes' latest
    samples and the allocations."""
    at = int(time.time()) if at is None else at
    nodes = db.session.scalars(
        select(Node).options(selectinload(Node.gpus)).where(Node.status != NodeStatus.REMOVED)
    ).all()
    held = {(n, i) for n, i in db.session.execute(select(Allocation.node_id, Allocation.gpu_index))}
    sample = ClusterSample(
        at=at,
        gpus=0,
        gpus_allocated=0,
        gpus_reporting=0,
        gpus_busy=0,
        nodes_ready=0,
        nodes_drained=0,
        nodes_lost=0,
    )
    for node in nodes:
        state = NodeStatus(node.status)
        if state is NodeStatus.READY:
            sample.nodes_ready += 1
        elif state is NodeStatus.DRAINED:
            sample.nodes_drained += 1
        else:
            sample.nodes_lost += 1
            continue  # a lost node's GPUs are not the cluster's until it comes back
        readings = _readings(node)
        for gpu in node.gpus:
            sample.gpus += 1
            if (node.id, gpu.index) not in held:
                continue
            sample.gpus_allocated += 1
            utilisation = readings.get(gpu.index, {}).get("utilization_percent")
            if utilisation is not None and not gpu.simulated:
                sample.gpus_reporting += 1
                sample.gpus_busy += int(utilisation >= BUSY_PERCENT)
    db.session.merge(sample)
    db.session.commit()
    return sample


def _readings(node: Node) -> dict[int, dict[str, Any]]:
    return _readings_of(node.sample)


def _readings_of(sample: dict | None) -> dict[int, dict[str, Any]]:
    """A node's latest GPU readings (its heartbeat's sample), by GPU index."""
    gpus = (sample or {}).get("gpus") or [] if isinstance(sample, dict) else []
    return {g["index"]: g for g in gpus if isinstance(g, dict) and isinstance(g.get("index"), int)}


# A session's resources ---------------------------------------------------------------


def history(session: Session, points: int = 600) -> dict[str, Any]:
    """A session's resource history: a line per series, the GPUs it holds, totals."""
    usage = db.session.get(SessionUsage, session.id)
    gpus = []
    if session.node is not None:
        models = {g.index: g for g in session.node.gpus}
        gpus = [
            {
                "index": index,
                "model": models[index].model if index in models else "",
                "simulated": bool(models[index].simulated) if index in models else False,
            }
            for index in session.gpu_index_list
        ]
    series = {}
    for tag in metrics.tags(session, reserved=True):
        line = metrics.line(session, tag, points=points)
        if line is not None:
            series[tag.removeprefix(PREFIX)] = {"t": line["step"], "value": line["value"]}
    simulated = bool(gpus) and all(g["simulated"] for g in gpus)
    return {
        "session": session.ident,
        "status": session.status,
        "gpus": gpus,
        "simulated_gpus": simulated,
        "samples": usage.samples if usage else 0,
        "average_gpu_utilization": usage.gpu_utilization if usage else None,
        "gpu_memory_peak_mb": usage.gpu_memory_peak_mb if usage and usage.gpu_samples else None,
        "average_cpu_percent": (
            usage.cpu_percent_sum / usage.samples if usage and usage.samples else None
        ),
        "memory_peak_mb": usage.memory_peak_mb if usage else None,
        "last_sample_at": usage.last_sample_at if usage else None,
        "series": series,
    }


# The cluster -------------------------------------------------------------------------


def gpustat(viewer: User, *, only_theirs: bool = False) -> list[dict[str, Any]]:
    """Every GPU of the cluster (`only_theirs`: those the viewer's sessions hold): node,
    index, model, who holds it, its use now. The holding session's id is shown to its
    owner and administrators; others see whose. Plain rows, three queries: a cluster of
    thousands of GPUs reads in one go."""
    # Several sessions may hold shares of one GPU: each with the thousandths it holds.
    holders: dict[tuple[int, int], list[tuple[int, str, int, str, int, int]]] = defaultdict(list)
    for node_id, index, user_id, username, number, kind, session_id, milli in db.session.execute(
        select(
            Allocation.node_id,
            Allocation.gpu_index,
            Session.user_id,
            User.username,
            Session.number,
            Session.kind,
            Session.id,
            Allocation.milli,
        )
        .join(Session, Session.id == Allocation.session_id)
        .join(User, User.id == Session.user_id)
        .order_by(Allocation.id)
    ):
        holders[node_id, index].append((user_id, username, number, kind, session_id, milli))
    nodes = {
        node_id: (name, status, _readings_of(sample))
        for node_id, name, status, sample in db.session.execute(
            select(Node.id, Node.name, Node.status, Node.sample).where(
                Node.status != NodeStatus.REMOVED
            )
        )
    }
    rows = []
    for node_id, index, model, simulated, memory_mb in db.session.execute(
        select(Gpu.node_id, Gpu.index, Gpu.model, Gpu.simulated, Gpu.memory_mb).order_by(
            Gpu.node_id, Gpu.index
        )
    ):
        if node_id not in nodes:
            continue
        held = holders.get((node_id, index), [])
        if only_theirs and not any(h[0] == viewer.id for h in held):
            continue
        holder = held[0] if held else None
        name, status, readings = nodes[node_id]
        reading = {} if simulated else readings.get(index, {})
        rows.append(
            {
                "node": name,
                "node_status": status,
                "index": index,
                "model": model,
                "simulated": simulated,
                "memory_total_mb": memory_mb,
                "user": _holder_owner(holder),
                "session": _holder_ident(holder)
                if holder is not None and (viewer.is_admin or holder[0] == viewer.id)
                else None,
                "holders": [
                    {
                        "user": _holder_owner(h),
                        "session": _holder_ident(h)
                        if viewer.is_admin or h[0] == viewer.id
                        else None,
                        "share": h[5] / 1000,
                    }
                    for h in held
                ],
                "utilization_percent": reading.get("utilization_percent"),
                "memory_used_mb": reading.get("memory_used_mb"),
                "temperature_c": reading.get("temperature_c"),
                "power_w": reading.get("power_w"),
            }
        )
    rows.sort(key=lambda row: (row["node"], row["index"]))
    return rows


def _holder_owner(holder: tuple | None) -> str | None:
    if holder is None:
        return None
    return PLATFORM_KINDS.get(holder[3]) or holder[1]


def _holder_ident(holder: tuple) -> str:
    """A session's id as `Session.ident` writes it, from a plain row."""
    _, username, number, kind, session_id = holder[:5]
    if kind in PLATFORM_KINDS:
        return f"{PLATFORM_KINDS[kind]}/{session_id}"
    return f"{username}/{number}"


RANGES = {
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


def cluster_history(span: str = "1d", points: int = 500) -> dict[str, list]:
    """The share of GPUs allocated and the share of allocated GPUs at 80% or more, over
    `span`, averaged into at most `points` buckets (in SQL: a bucket a row comes back)."""
    if span not in RANGES:
        raise ApiError(f"span is one of {', '.join(RANGES)}, not {span!r}", code="invalid_input")
    seconds = int(RANGES[span].total_seconds())
    start = int(time.time()) - seconds
    width = max(1, seconds // points)
    table = ClusterSample.__table__
    bucket = ((table.c.at - start) // width).label("bucket")
    rows = db.session.execute(
        select(
            bucket,
            func.avg(table.c.at),
            func.count(),
            func.sum(table.c.gpus),
            func.sum(table.c.gpus_allocated),
            func.sum(table.c.gpus_reporting),
            func.sum(table.c.gpus_busy),
        )
        .where(table.c.at >= start)
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    history: dict[str, list] = {"time": [], "allocated": [], "busy": [], "gpus": []}
    for _, at, count, gpus, allocated, reporting, busy in rows:
        history["time"].append(_iso(float(at)))
        history["allocated"].append(round(allocated / gpus, 4) if gpus else 0.0)
        history["busy"].append(round(busy / reporting, 4) if reporting else None)
        history["gpus"].append(round(gpus / count, 1))
    return history


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def session_ended(session: Session) -> None:
    """Add an ended session's average GPU utilisation to its owner's recent ones (not
    committed: it lands with the end)."""
    usage = db.session.get(SessionUsage, session.id)
    if usage is None or not usage.gpu_samples:
        return
    recent = db.session.get(UserUsage, session.user_id, with_for_update=True)
    if recent is None:
        recent = UserUsage(user_id=session.user_id, recent=[])
        db.session.add(recent)
    # A new list: the JSON column sees an assignment, not a change in place.
    recent.recent = [*(recent.recent or []), round(usage.gpu_utilization or 0.0, 3)][-USER_WINDOW:]


def user_averages(viewer: User) -> list[dict[str, Any]]:
    """Per user, the average GPU utilisation of their last 100 ended sessions that
    reported one (NSML's front-page figure). Administrators see everyone; others
    themselves."""
    query = select(User.username, UserUsage.recent).join(UserUsage, UserUsage.user_id == User.id)
    if not viewer.is_admin:
        query = query.where(User.id == viewer.id)
    return [
        {
            "user": username,
            "average_gpu_utilization": round(sum(recent) / len(recent), 2),
            "sessions": len(recent),
        }
        for username, recent in db.session.execute(query.order_by(User.username))
        if recent
    ]


def node_states() -> list[dict[str, Any]]:
    held: dict[int, int] = defaultdict(int)
    for node_id, count in db.session.execute(
        select(Allocation.node_id, func.count(func.distinct(Allocation.gpu_index))).group_by(
            Allocation.node_id
        )
    ):
        held[node_id] = count
    gpus: dict[int, int] = defaultdict(int)
    for node_id, count in db.session.execute(
        select(Gpu.node_id, func.count()).group_by(Gpu.node_id)
    ):
        gpus[node_id] = count
    return [
        {
            "name": node.name,
            "status": node.status,
            "runtime": node.runtime,
            "gpus": gpus[node.id],
            "gpus_allocated": held[node.id],
            "last_heartbeat_at": node.last_heartbeat_at,
        }
        for node in db.session.scalars(
            select(Node).where(Node.status != NodeStatus.REMOVED).order_by(Node.name)
        )
    ]


def dashboard(viewer: User, span: str = "1d") -> dict[str, Any]:
    nodes = node_states()
    simulated = db.session.scalar(select(func.count(Gpu.id)).where(Gpu.simulated.is_(True)))
    return {
        "span": span,
        "history": cluster_history(span),
        "users": user_averages(viewer),
        "nodes": nodes,
        "gpus": sum(n["gpus"] for n in nodes),
        "gpus_allocated": sum(n["gpus_allocated"] for n in nodes),
        "simulated_gpus": int(simulated or 0),
        "per_user": viewer.is_admin,
    }
