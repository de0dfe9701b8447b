"""Training sessions: creation, lookup with access control, stop, removal, state changes."""

from __future__ import annotations

import logging
import secrets
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.exceptions import LockError, RedisError
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import selectinload

from nodes import environment
from portal import keys, node_work
from portal.errors import ApiError, Conflict, Forbidden, NotFound
from portal.extensions import db
from portal.models import (
    Checkpoint,
    LogLine,
    ScalarSeries,
    Session,
    SessionDataset,
    SessionStatus,
    User,
)
from portal.models.session import PLATFORM_KINDS, SessionKind
from portal.queue import wake_scheduler
from portal.services import archives, blobs, metrics
from portal.services import datasets as dataset_service
from portal.services import nodes as node_service
from portal.services.artifacts import TooLarge
from portal.services.lifecycle import finish
from portal.timeutil import isoformat, utcnow
from scheduler.policy import WHOLE, Request

log = logging.getLogger(__name__)

MAX_CODE_FILES = 200_000


@dataclass(frozen=True)
class SessionRequest:
    entry: str
    code_digest: str
    code_bytes: int = 0
    args: str = ""
    gpus: int = 0
    cpus: float = 1.0
    memory_mb: int = 2048
    image: str = ""
    gpu_models: tuple[str, ...] = ()
    # Instead of whole GPUs, a share of one: thousandths of it, or some of its memory.
    gpu_milli: int = 0
    gpu_memory_mb: int = 0
    datasets: tuple[str, ...] = ()  # NAME or NAME:VERSION, each mounted at DATASET_PATH/NAME
    memo: str = ""
    environment: str = ""  # a digest, for sessions made from another's code (forks)
    kind: str = SessionKind.TRAINING.value
    stall_minutes: int | None = None


UPLOAD_MEMORY_SECONDS = 86400


def record_upload(redis, user: User, digest: str, size: int = 0) -> None:
    """Remember that `user` uploaded this archive: they may start sessions of it, and,
    until a session runs it, it counts against their code quota."""
    if redis is not None:
        try:
            with redis.pipeline() as pipe:
                pipe.set(keys.code_upload(user.id, digest), 1, ex=UPLOAD_MEMORY_SECONDS)
                if not runs_code(user, digest):
                    pipe.hset(keys.code_uploads(user.id), digest, f"{size}:{int(time.time())}")
                    pipe.expire(keys.code_uploads(user.id), UPLOAD_MEMORY_SECONDS)
                pipe.execute()
        except RedisError:
            log.warning("could not record an upload of %s", user.username, exc_info=True)


def stored_code_bytes(user: User, redis) -> int:
    """The code `user` holds in the store: each archive their sessions run, once, and
    each one uploaded in the last day that no session of theirs runs yet."""
    running = dict(
        db.session.execute(
            select(Session.code_digest, func.max(Session.code_bytes))
            .where(Session.user_id == user.id)
            .group_by(Session.code_digest)
        ).all()
    )
    pending: dict = {}
    if redis is not None:
        try:
            pending = redis.hgetall(keys.code_uploads(user.id))
        except RedisError:
            log.warning("could not read the uploads of %s", user.username, exc_info=True)
    since = time.time() - UPLOAD_MEMORY_SECONDS
    waiting = 0
    for digest, value in pending.items():
        size, _, at = value.decode().partition(":")
        if digest.decode() not in running and int(at or 0) > since:
            waiting += int(size)
    return sum(running.values()) + waiting


@contextmanager
def code_upload_turn(user: User, redis) -> Iterator[None]:
    """One code upload of `user` at a time is checked, stored and counted."""
    if redis is None:
        yield
        return
    try:
        with redis.lock(keys.code_upload_lock(user.id), timeout=900, blocking_timeout=120):
            yield
    except LockError:
        raise Conflict("another code upload of yours is under way: try again") from None


def store_code(
    user: User, stream, length: int | None, store, redis, *, limit: int, quota: int
) -> tuple[str, int]:
    """Store a code archive of `user` (its digest and size): refused past `limit` bytes,
    or past the room their code quota leaves, by its length where the client sent one,
    else cut off by the store; then remembered as theirs to run."""
    if (length or 0) > limit:
        raise TooLarge(limit)
    with code_upload_turn(user, redis):
        room = code_room(user, redis, quota)
        if (length or 0) > room:
            raise quota_error(quota - room, quota)
        try:
            digest, size = store.put(stream, max_bytes=min(limit, room))
        except TooLarge:
            if room >= limit:
                raise
            raise quota_error(quota - room, quota) from None
        record_upload(redis, user, digest, size)
    return digest, size


def code_room(user: User, redis, quota: int) -> int:
    """Bytes of code `user` may still upload; refused with a clear error at none."""
    used = stored_code_bytes(user, redis)
    if used >= quota:
        raise quota_error(used, quota)
    return quota - used


def quota_error(used: int, quota: int) -> ApiError:
    return ApiError(
        f"this archive does not fit your code quota ({used / 2**20:.1f} of "
        f"{quota / 2**20:g} MiB used): remove sessions you no longer need (`podium rm`)",
        code="quota_exceeded",
        status=413,
    )


def forget_upload(redis, user: User, digest: str) -> None:
    """A session runs this archive now: it counts through the session from here on."""
    if redis is not None:
        try:
            redis.hdel(keys.code_uploads(user.id), digest)
        except RedisError:
            log.warning("could not update the uploads of %s", user.username, exc_info=True)


def runs_code(user: User, digest: str) -> bool:
    """Does a session of `user` run this code archive?"""
    return (
        db.session.scalar(
            select(Session.id)
            .where(Session.user_id == user.id, Session.code_digest == digest)
            .limit(1)
        )
        is not None
    )


def may_use_code(user: User, digest: str, store, redis) -> bool:
    """A code archive is the uploader's (and their sessions'): whoever learns another's
    digest can neither run that code nor tell whether it is stored."""
    if not store.exists(digest):
        return False
    if runs_code(user, digest):
        return True
    try:
        return bool(redis is not None and redis.exists(keys.code_upload(user.id, digest)))
    except RedisError:
        return False


def validate_request(request: SessionRequest, owner: User | None = None) -> None:
    if not request.entry or request.entry.startswith(("/", "..")) or "/../" in request.entry:
        raise ApiError(
            "the entry point must be a relative path inside the code folder", code="invalid_input"
        )
    refusal = environment.image_refusal(request.image)
    if refusal:
        raise ApiError(refusal, code="invalid_input")
    try:
        shlex.split(request.args)
    except ValueError as exc:
        raise ApiError(f"the arguments cannot be parsed: {exc}", code="invalid_input") from exc
    if request.gpus < 0 or request.cpus <= 0 or request.memory_mb <= 0:
        raise ApiError("GPUs must be 0 or more; CPUs and memory more than 0", code="invalid_input")
    share_refusal = gpu_share_refusal(request.gpus, request.gpu_milli, request.gpu_memory_mb)
    if share_refusal:
        raise ApiError(share_refusal, code="invalid_input")
    refusal = node_service.capacity_refusal(
        Request(
            gpus=request.gpus,
            cpus=request.cpus,
            memory_mb=request.memory_mb,
            gpu_models=frozenset(request.gpu_models),
            gpu_milli=request.gpu_milli,
            gpu_memory_mb=request.gpu_memory_mb,
        ),
        owner,
    )
    if refusal:
        raise ApiError(
            f"no node could ever run this session: it {refusal}", code="unsatisfiable", status=422
        )


def check_code(
    archive: Path, entry: str, *, max_unpacked_bytes: int, image: str = "", owner: User
) -> str:
    """The code must be a safe archive holding the entry point, and the environment it
    asks for one that can be built: say so now, not on a node. Returns the environment's
    digest, or "" for none."""
    manifest = archives.inspect(
        archive,
        max_unpacked_bytes=max_unpacked_bytes,
        max_files=MAX_CODE_FILES,
        keep=environment.FILES,
        keep_bytes=environment.MAX_FILE_BYTES,
    )
    if entry not in manifest.files:
        raise ApiError(f"the code has no file {entry}", code="invalid_input")
    return environment_of(manifest.kept, image, owner)


def environment_of(files: dict[str, bytes], image: str, owner: User) -> str:
    """The digest of the environment the code's files ask for. `--image` names the image
    outright, unless it is a Podium base image, which the environment then builds on."""
    if image and not environment.is_base(image):
        return ""
    try:
        wanted = environment.Environment.from_files(files, base=image)
    except environment.InvalidEnvironment as exc:
        raise ApiError(str(exc), code="invalid_environment", status=422) from None
    if wanted is None:
        return ""
    refusal = wanted.refusal(owner.is_trusted)
    if refusal:
        raise ApiError(refusal, code="invalid_environment", status=422)
    return wanted.digest


def create_session(
    user: User,
    request: SessionRequest,
    redis=None,
    archive: Path | None = None,
    max_unpacked_bytes: int = 8 * 2**30,
    *,
    commit: bool = True,
) -> Session:
    """A pending session; with `commit=False` it is only flushed, for a caller that
    adds to it and commits the whole (the scheduler sees none of it before)."""
    validate_request(request, user)
    environment_digest = request.environment
    if archive is not None:
        environment_digest = check_code(
            archive,
            request.entry,
            max_unpacked_bytes=max_unpacked_bytes,
            image=request.image,
            owner=user,
        )
    versions = [dataset_service.find_version(user, ref) for ref in request.datasets]
    mounts = [v.dataset.name for v in versions]
    if len(set(mounts)) != len(mounts):
        raise ApiError("a dataset can be mounted once per session", code="invalid_input")
    platform = request.kind in PLATFORM_KINDS
    # A grading or reproduction session takes none of its owner's numbers: it is
    # grade/ID or reproduce/ID, and its number becomes -ID once the row has its id (a
    # random negative one until then).
    number = (
        -secrets.randbits(30) - 1
        if platform
        else db.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(next_session_number=User.next_session_number + 1)
            .returning(User.next_session_number)
        ).scalar_one()
        - 1
    )
    session = Session(
        user_id=user.id,
        number=number,
        kind=request.kind,
        entry=request.entry,
        args=request.args,
        code_digest=request.code_digest,
        code_bytes=request.code_bytes,
        gpus=request.gpus,
        gpu_milli=request.gpu_milli,
        gpu_memory_mb=request.gpu_memory_mb,
        cpus=request.cpus,
        memory_mb=request.memory_mb,
        image=request.image,
        environment=environment_digest,
        gpu_models="|".join(sorted(set(request.gpu_models))),
        memo=request.memo,
        stall_minutes=request.stall_minutes,
        status=SessionStatus.PENDING.value,
        status_reason="waiting for the scheduler",
    )
    db.session.add(session)
    db.session.flush()
    if platform:
        session.number = -session.id
    db.session.add_all(
        SessionDataset(session_id=session.id, version_id=v.id, ref=v.ident, mount=v.dataset.name)
        for v in versions
    )
    for version in versions:
        version.dataset.last_accessed_at = utcnow()
    if not commit:
        db.session.flush()
        return session
    db.session.commit()
    if redis is not None:
        wake(redis)
    return session


def wake(redis) -> None:
    try:
        wake_scheduler(redis)
    except RedisError:
        # The scheduler also runs a pass every second; the database is the truth.
        log.warning("could not wake the scheduler", exc_info=True)


def mounted(session: Session) -> list[SessionDataset]:
    return list(
        db.session.scalars(
            select(SessionDataset)
            .where(SessionDataset.session_id == session.id)
            .order_by(SessionDataset.mount)
        )
    )


def dataset_refs(session: Session) -> list[str]:
    return [m.ref for m in mounted(session)]


def parse_ident(ident: str, viewer: User) -> tuple[str, int]:
    """USER/N, or N for one's own session N."""
    username, _, number = ident.strip().rpartition("/")
    if not number.isdigit():
        raise NotFound(f"no session {ident!r}: a session id reads USER/N")
    if len(number) > 18:
        raise NotFound(f"no session {ident}")
    return (username or viewer.username), int(number)


def check_visible(viewer: User, owner: User, what: str, *, change: bool = False) -> None:
    """Who may see a user's search or server: its owner, administrators and the owner's
    teammates (others are told there is no such thing, so names do not leak); who may
    change it: its owner and administrators."""
    if viewer.is_admin or owner.id == viewer.id:
        return
    if not teammates(viewer, owner):
        raise NotFound(f"no {what}")
    if change:
        raise Forbidden(f"only {owner.username} may change {what}")


def teammates(a: User, b: User) -> bool:
    return bool(dataset_service.team_ids(a) & dataset_service.team_ids(b))


def find_session(
    viewer: User, ident: str, *, change: bool = False, scope: int | None = None
) -> Session:
    """The session, if `viewer` may see it: its owner, an administrator, or a member of a
    team its owner is in; 404 otherwise, so ids do not leak. With `change`, teammates
    (who may look, and fork) are refused with 403, and so is everyone but an
    administrator and the session's own code (`scope`: the session a token is scoped
    to) for the sessions the platform runs for a user (grading, reproductions): a team
    must not stop, feed or rewrite the re-run that checks its work."""
    username, number = parse_ident(ident, viewer)
    platform_kind = next((k for k, name in PLATFORM_KINDS.items() if name == username), None)
    if platform_kind is not None:
        session = db.session.scalar(
            select(Session).where(Session.id == number, Session.kind == platform_kind)
        )
    else:
        session = db.session.scalar(
            select(Session)
            .join(User)
            .where(
                User.username == username,
                Session.number == number,
                Session.kind == SessionKind.TRAINING.value,
            )
        )
    if session is None:
        raise NotFound(f"no session {username}/{number}")
    if viewer.is_admin:
        return session
    if session.user_id != viewer.id and not teammates(viewer, session.user):
        raise NotFound(f"no session {username}/{number}")
    if change and session.kind in PLATFORM_KINDS and scope != session.id:
        raise Forbidden(f"{session.ident} is run by the platform: only it changes it")
    if session.user_id == viewer.id:
        return session
    if change:
        raise Forbidden(f"only {session.user.username} may change {session.ident}")
    return session


def fork(
    viewer: User,
    source: Session,
    *,
    args: str | None,
    checkpoint: str | None,
    store,
    redis=None,
    commit: bool = True,
    gpus: int | None = None,
    gpu_milli: int | None = None,
) -> Session:
    """A new session of `viewer` with the source's code, data and resources (GPUs as
    `gpus` and `gpu_milli` say, where given); with
    `checkpoint`, that checkpoint is copied to it and named in PODIUM_RESUME. The
    sessions the platform runs are not forked: fork the training they came from. With
    `commit=False` it is only flushed, as `create_session` does."""
    if source.kind in PLATFORM_KINDS:
        raise Forbidden(
            f"{source.ident} is run by the platform: fork the training session it came from"
            + (f" ({source.forked_from})" if source.forked_from else "")
        )
    request = SessionRequest(
        entry=source.entry,
        code_digest=source.code_digest,
        code_bytes=source.code_bytes,
        args=source.args if args is None else args,
        gpus=source.gpus if gpus is None else gpus,
        gpu_milli=source.gpu_milli if gpu_milli is None else gpu_milli,
        gpu_memory_mb=source.gpu_memory_mb if gpus is None and gpu_milli is None else 0,
        cpus=source.cpus,
        memory_mb=source.memory_mb,
        image=source.image,
        environment=source.environment,
        gpu_models=tuple(sorted(source.gpu_model_set)),
        datasets=tuple(dataset_refs(source)),
        memo=f"forked from {source.ident}",
        stall_minutes=source.stall_minutes,
    )
    copied = None
    if checkpoint is not None:
        copied = db.session.scalar(
            select(Checkpoint).where(
                Checkpoint.session_id == source.id, Checkpoint.name == checkpoint
            )
        )
        if copied is None:
            raise NotFound(f"session {source.ident} has no checkpoint {checkpoint!r}")
    session = create_session(viewer, request, redis=None)
    session.forked_from = source.ident
    if copied is not None:
        db.session.add(
            Checkpoint(
                session_id=session.id, name=copied.name, digest=copied.digest, size=copied.size
            )
        )
        session.resume_checkpoint = copied.name
    if not commit:
        db.session.flush()
        return session
    db.session.commit()
    if redis is not None:
        wake(redis)
    return session


MAX_MEMO = 2000


def lineage(viewer: User, session: Session) -> dict[str, Any]:
    """Where a session came from and what came of it: the session it was forked or
    resumed from, and the sessions forked or resumed from it that the viewer may see."""
    children = [
        child
        for child in db.session.scalars(
            select(Session)
            .where(Session.forked_from == session.ident)
            .options(selectinload(Session.user))
            .order_by(Session.id)
        )
        if viewer.is_admin or child.user_id == viewer.id or teammates(viewer, child.user)
    ]
    return {"parent": session.forked_from or None, "children": children}


def duration(session: Session) -> float | None:
    """Seconds it ran (so far, while it runs)."""
    if session.started_at is None:
        return None
    end = session.ended_at or utcnow()
    return max(0.0, (end - session.started_at).total_seconds())


def set_memo(session: Session, memo: str) -> Session:
    if len(memo) > MAX_MEMO:
        raise ApiError(f"a memo holds at most {MAX_MEMO} characters", code="invalid_input")
    session.memo = memo
    db.session.commit()
    return session


RESUMABLE = (SessionStatus.STOPPED, SessionStatus.FAILED, SessionStatus.LOST, SessionStatus.KILLED)


def resume(viewer: User, source: Session, *, checkpoint: str | None, store, redis=None) -> Session:
    """Go on from where a session that did not complete stopped: a new session of the
    same code, data and arguments, from its last checkpoint (or the one named), linked to
    it (forked from it, and its memo says so)."""
    if source.state not in RESUMABLE:
        raise Conflict(
            f"session {source.ident} is {source.status}: only a stopped, failed, killed or "
            "lost session is resumed (fork one that completed)"
        )
    if checkpoint is None:
        last = db.session.scalar(
            select(Checkpoint)
            .where(Checkpoint.session_id == source.id)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.id.desc())
            .limit(1)
        )
        if last is None:
            raise Conflict(f"session {source.ident} saved no checkpoint to resume from")
        checkpoint = last.name
    session = fork(viewer, source, args=None, checkpoint=checkpoint, store=store, redis=redis)
    session.memo = f"resumed {source.ident} from checkpoint {checkpoint}"
    db.session.commit()
    return session


@dataclass(frozen=True)
class SessionFilter:
    """What the sessions list shows: filters, the order, one page."""

    everyone: bool = False  # administrators: everyone's sessions
    status: str | None = None
    user: str | None = None
    entry: str | None = None  # a part of the entry point
    memo: str | None = None  # a part of the memo
    argument: str | None = None  # NAME=VALUE: `--NAME VALUE` or `--NAME=VALUE`
    metric: str | None = None  # order by this tag's value ...
    by: str = "last"  # ... its last, min or max
    descending: bool = True
    offset: int = 0
    limit: int = 50


def search_sessions(viewer: User, want: SessionFilter) -> tuple[list[Session], int]:
    """One page of the sessions the viewer may list, and how many there are in all."""
    query = select(Session)
    if not (want.everyone and viewer.is_admin):
        query = query.where(Session.user_id == viewer.id)
    elif want.user:
        query = query.join(User, Session.user_id == User.id).where(User.username == want.user)
    if want.status:
        query = query.where(Session.status == want.status)
    if want.entry:
        query = query.where(Session.entry.contains(want.entry, autoescape=True))
    if want.memo:
        query = query.where(Session.memo.contains(want.memo, autoescape=True))
    if want.argument:
        name, equals, value = want.argument.partition("=")
        if not equals or not name.strip():
            raise ApiError("an argument filter reads NAME=VALUE, e.g. lr=0.1", code="invalid_input")
        name = name.strip().lstrip("-")
        padded = " " + Session.args + " "
        query = query.where(
            padded.contains(f" --{name} {value} ", autoescape=True)
            | padded.contains(f" --{name}={value} ", autoescape=True)
            | padded.contains(f" -{name} {value} ", autoescape=True)
        )
    total = db.session.scalar(select(func.count()).select_from(query.subquery())) or 0
    if want.metric:
        column = {
            "last": ScalarSeries.last_value,
            "min": ScalarSeries.min_value,
            "max": ScalarSeries.max_value,
        }.get(want.by)
        if column is None:
            raise ApiError("order by a metric's last, min or max", code="invalid_input")
        query = query.outerjoin(
            ScalarSeries,
            (ScalarSeries.session_id == Session.id) & (ScalarSeries.tag == want.metric),
        ).order_by(
            ScalarSeries.session_id.is_(None),  # sessions without the metric last
            column.desc() if want.descending else column.asc(),
            Session.id.desc(),
        )
    else:
        query = query.order_by(Session.id.desc() if want.descending else Session.id.asc())
    found = db.session.scalars(
        query.options(selectinload(Session.user), selectinload(Session.node))
        .offset(want.offset)
        .limit(want.limit)
    )
    return list(found), total


def filter_from(args: dict[str, Any]) -> SessionFilter:
    """The filter a request's query asks for (API and pages read the same names)."""
    return SessionFilter(
        everyone=bool(args.get("all")),
        status=args.get("status") or None,
        user=args.get("user") or None,
        entry=args.get("entry") or None,
        memo=args.get("memo") or None,
        argument=args.get("arg") or None,
        metric=args.get("metric") or None,
        by=args.get("by") or "last",
        descending=(args.get("order") or "desc") == "desc",
        offset=int(args.get("offset") or 0),
        limit=int(args.get("limit") or 50),
    )


def queue() -> list[Session]:
    """Pending sessions in arrival order, each with the reason it waits."""
    return list(
        db.session.scalars(
            select(Session)
            .where(Session.status == SessionStatus.PENDING.value)
            .order_by(Session.created_at, Session.id)
        )
    )


# The least share of a GPU a session may ask for: each process on a GPU also holds
# CUDA's context (the node allows it 1 GiB over a share, `nodes/monitor.py`), so a tiny
# share would buy far more of the GPU than it pays for.
MIN_SHARE = 50


def gpu_share_refusal(gpus: int, milli: int, gpu_memory_mb: int) -> str | None:
    """Why a request's GPUs are not one of: whole GPUs, a share of one GPU in thousandths
    (1-999), or a share of one GPU's memory; None when they are."""
    if milli and not MIN_SHARE <= milli < WHOLE:
        return (
            f"a share of one GPU is from {MIN_SHARE / WHOLE:g} to 0.999 of it "
            "(beside its share, a process holds CUDA's own context)"
        )
    if gpu_memory_mb < 0:
        return "GPU memory must be more than 0"
    if sum(map(bool, (gpus, milli, gpu_memory_mb))) > 1:
        return "ask for whole GPUs, a share of one GPU or some of one GPU's memory, not several"
    return None


def gpu_share(session: Session) -> float | None:
    """The share of one GPU a session takes (its memory cap), or None: whole GPUs, or a
    share by memory not placed (it depends on the GPU)."""
    if session.gpu_milli:
        return session.gpu_milli / WHOLE
    held = [a.milli for a in session.allocations] if session.gpu_memory_mb else []
    return held[0] / WHOLE if held else None


def command_line(session: Session) -> str:
    return shlex.join(["python", session.entry, *shlex.split(session.args)])


def request_stop(session: Session, redis=None, reason: str = "") -> Session:
    """Stop a session: its owner's or an administrator's request, or the platform's with
    a `reason` (out of credit) that its end then gives."""
    state = session.state
    if state.is_final:
        raise Conflict(f"session {session.ident} has already ended ({session.status})")
    session.stop_requested = True
    session.stop_reason = reason
    if state is SessionStatus.PENDING:
        finish(session, SessionStatus.STOPPED, reason or "stopped before it was placed")
        return session
    db.session.commit()
    tell_node(session, node_work.STOP, f"stop-{session.id}", redis)
    return session


def tell_node(session: Session, kind: str, job_id: str, redis) -> bool:
    """Queue a job about a placed session (stop it, ask it to checkpoint) for its node;
    False when it could not be (no node, no Redis): the caller's state stands anyway."""
    if redis is None or session.node is None:
        return False
    try:
        node_work.push(redis, session.node.name, kind, job_id=job_id, session_id=session.id)
    except RedisError:
        log.warning("could not queue the %s of %s", kind, session.ident, exc_info=True)
        return False
    return True


def ask_to_checkpoint(session: Session, redis) -> bool:
    """Ask a running session whose program bound `save` to checkpoint now (SIGUSR1: the
    SDK saves `signal-STEP`); False when it bound none or could not be asked."""
    if not session.saves_on_signal:
        return False
    job_id = f"checkpoint-{session.id}-{int(utcnow().timestamp())}"
    return tell_node(session, node_work.CHECKPOINT, job_id, redis)


def check_data_stays(viewer: User, session: Session, what: str) -> None:
    """Refuse `what` when the session mounts a sessions-only dataset `viewer` does not
    own: a command beside it or a checkpoint of it could carry the data out."""
    dataset_service.check_leaves(
        viewer, [m.version.dataset for m in mounted(session) if m.version is not None], what
    )


def exec_in_session(
    session: Session, command: list[str], redis, timeout: float = 60.0, viewer: User | None = None
) -> dict:
    """Run a command beside a running session, on its node; wait for its output."""
    check_data_stays(viewer or session.user, session, "a command beside it")
    if session.state is not SessionStatus.RUNNING or session.node is None:
        raise Conflict(f"session {session.ident} is {session.status}: it must be running")
    node_name, ident = session.node.name, session.ident
    job_id = node_work.push(
        redis,
        node_name,
        node_work.EXEC,
        ttl=int(timeout) + 300,
        session_id=session.id,
        command=command,
        timeout=timeout,
    )
    # The wait holds no database connection.
    db.session.close()
    result = node_work.wait_done(redis, job_id, timeout + 15)
    if result is None:
        raise ApiError(f"node {node_name} did not answer in time", code="node_timeout", status=504)
    if result.get("error"):
        raise Conflict(f"session {ident}: {result['error']}")
    if "exit_code" not in result:
        raise ApiError(f"node {node_name} could not run it", code="node_error", status=502)
    return {"exit_code": result["exit_code"], "output": result.get("output", "")}


def remove_session(session: Session, store=None) -> None:
    if session.state.is_active:
        raise Conflict(f"session {session.ident} is {session.status}: stop it first")
    digests = {session.code_digest}
    digests.update(
        db.session.scalars(select(Checkpoint.digest).where(Checkpoint.session_id == session.id))
    )
    for model in (LogLine, Checkpoint):
        db.session.execute(delete(model).where(model.session_id == session.id))
    metrics.remove(session.id)
    db.session.delete(session)
    db.session.commit()
    if store is not None:
        blobs.release(store, digests)


def append_logs(session: Session, lines: list[dict[str, Any]]) -> int:
    """Store log lines; a line whose seq is stored already (a retried batch) is skipped."""
    if not lines:
        return 0
    seqs = [int(line["seq"]) for line in lines]
    known = set(
        db.session.scalars(
            select(LogLine.seq).where(LogLine.session_id == session.id, LogLine.seq.in_(seqs))
        )
    )
    fresh = [
        LogLine(session_id=session.id, seq=int(line["seq"]), text=str(line["text"]))
        for line in lines
        if int(line["seq"]) not in known
    ]
    db.session.add_all(fresh)
    db.session.commit()
    return len(fresh)


def read_logs(session: Session, after: int = -1, limit: int = 1000) -> list[LogLine]:
    return list(
        db.session.scalars(
            select(LogLine)
            .where(LogLine.session_id == session.id, LogLine.seq > after)
            .order_by(LogLine.seq)
            .limit(limit)
        )
    )


def tail_logs(session: Session, lines: int = 200) -> list[LogLine]:
    newest = list(
        db.session.scalars(
            select(LogLine)
            .where(LogLine.session_id == session.id)
            .order_by(LogLine.seq.desc())
            .limit(lines)
        )
    )
    return newest[::-1]


def session_dict(session: Session) -> dict[str, Any]:
    return {
        "id": session.ident,
        "user": session.user.username,
        "number": session.ident_number,
        "kind": session.kind,
        "status": session.status,
        "status_reason": session.status_reason,
        "entry": session.entry,
        "args": session.args,
        "command": command_line(session),
        "gpus": session.gpus,
        "gpu_memory_mb": session.gpu_memory_mb or None,
        "gpu_share": gpu_share(session),
        "cpus": session.cpus,
        "memory_mb": session.memory_mb,
        "image": session.image,
        "environment": environment.image_tag(session.environment) if session.environment else "",
        "gpu_models": sorted(session.gpu_model_set),
        "datasets": dataset_refs(session),
        "memo": session.memo,
        "forked_from": session.forked_from or None,
        "resume_checkpoint": session.resume_checkpoint or None,
        "node": session.node.name if session.node else None,
        "gpu_indices": session.gpu_index_list,
        "exit_code": session.exit_code,
        "code_digest": session.code_digest,
        "stall_minutes": session.stall_minutes,
        "stalled_since": isoformat(session.stalled_at),
        "saves_on_signal": session.saves_on_signal,
        "credit_stop_at": isoformat(session.credit_stop_at),
        "created_at": isoformat(session.created_at),
        "scheduled_at": isoformat(session.scheduled_at),
        "started_at": isoformat(session.started_at),
        "ended_at": isoformat(session.ended_at),
    }
