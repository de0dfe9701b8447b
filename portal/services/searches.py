"""Hyperparameter searches (`podium automl`): starting one, listing, showing and stopping
them (the API and pages call these), and `advance`, the driver the leading scheduler's
housekeeping runs every few seconds for each running search.

A search's trials are ordinary sessions of its owner: placed by the scheduler with the
rest, charged to the owner's credit, shown in `ps`, comparable. Everything the driver
decides from is in the database (the trials, their sessions, the metric's series and
the checkpoints), so a restarted scheduler goes on where the last one was; a search row
is locked while it is advanced, so two schedulers (a failover in flight) do not both
start its next trial.

- grid, random, TPE: each trial runs to its end; the next one starts while fewer than
  `parallel` run and the budget lasts.
- ASHA (Li et al.'s asynchronous successive halving): random configurations, each
  trained in segments up to its rungs (min_steps * eta^k steps, then max_steps), each
  segment a session told where to stop; whenever a session may start, a configuration
  in the top 1/eta of those that reached a rung goes on to the next (from the highest
  rung down; a fork of its last segment, from its checkpoint), else a new one starts at
  the bottom rung. The rest stop where they are: weak sessions stop early, whatever the
  speed of a step.
- PBT: `parallel` members, trained in segments of `interval` steps, each segment a
  session told to train up to its end (`--epochs 3`, then a fork of it with
  `--epochs 6` ...; `steps_arg` names the option). Once every member's segment ended,
  they are ranked by their metric there: the bottom quantile goes on from a top
  member's checkpoint with its hyperparameters perturbed (exploit and explore), the
  rest from their own, so each member's lineage is a chain of sessions, and the
  generations stay in step whatever the speed of a step.
"""

from __future__ import annotations

import logging
import random
from datetime import timedelta
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from portal.errors import ApiError, Conflict, NotFound
from portal.extensions import db
from portal.models import (
    Checkpoint,
    ScalarSeries,
    Search,
    SearchStatus,
    SearchTrial,
    SessionStatus,
    TrialState,
    User,
)
from portal.services import search_space
from portal.services import sessions as session_service
from portal.services.search_space import Past, Spec
from portal.timeutil import isoformat, utcnow

log = logging.getLogger(__name__)

# Trials that fail one after another, with none done, before the search gives up: its
# code is broken, and the budget should not burn on it.
FAILURES_IN_A_ROW = 3
# What a trial's session carries from the search's request.
TEMPLATE_FIELDS = (
    "entry",
    "code_digest",
    "code_bytes",
    "gpus",
    "gpu_milli",
    "gpu_memory_mb",
    "cpus",
    "memory_mb",
    "image",
    "environment",
    "gpu_models",
    "datasets",
)


def parse_spec_text(text: str) -> dict[str, Any]:
    """A spec file's text (YAML, or JSON) as a mapping, for the pages' form."""
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ApiError(
            f"search spec: cannot read it as YAML: {exc}", code="invalid_input"
        ) from None
    if not isinstance(body, dict):
        raise ApiError(
            "search spec: a mapping of algorithm, metric, search ...", code="invalid_input"
        )
    return body


def start(
    owner: User,
    spec_body: Any,
    request: session_service.SessionRequest,
    *,
    archive=None,
    max_unpacked_bytes: int = 8 * 2**30,
    memo: str = "",
) -> Search:
    """A running search of `owner`: the spec checked whole, the session request (its code
    and resources) checked as `podium run` checks one. Its first trials start at the
    driver's next turn."""
    spec = search_space.parse_spec(spec_body)
    session_service.validate_request(request, owner)
    environment = request.environment
    if archive is not None:
        environment = session_service.check_code(
            archive,
            request.entry,
            max_unpacked_bytes=max_unpacked_bytes,
            image=request.image,
            owner=owner,
        )
    if spec.gpu_hours is not None and not (
        request.gpus or request.gpu_milli or request.gpu_memory_mb
    ):
        raise ApiError(
            "search spec: a budget in GPU-hours needs sessions with GPUs (-g); "
            "give sessions or minutes",
            code="invalid_input",
        )
    template = {
        "entry": request.entry,
        "code_digest": request.code_digest,
        "code_bytes": request.code_bytes,
        "gpus": request.gpus,
        "gpu_milli": request.gpu_milli,
        "gpu_memory_mb": request.gpu_memory_mb,
        "cpus": request.cpus,
        "memory_mb": request.memory_mb,
        "image": request.image,
        "environment": environment,
        "gpu_models": list(request.gpu_models),
        "datasets": list(request.datasets),
    }
    number = (
        db.session.scalar(select(func.max(Search.number)).where(Search.user_id == owner.id)) or 0
    ) + 1
    search = Search(
        user_id=owner.id,
        number=number,
        algorithm=spec.algorithm,
        metric=spec.metric,
        direction=spec.direction,
        spec=spec.as_dict(),
        template=template,
        code_digest=request.code_digest,
        memo=memo,
        status=SearchStatus.RUNNING.value,
        status_reason="starting its first trials",
    )
    db.session.add(search)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise Conflict(
            "another search of yours was started at the same moment: try again"
        ) from None
    return search


def parse_ident(ident: str, viewer: User) -> tuple[str, int]:
    """`USER/search/N`, or `N` for one's own."""
    parts = ident.strip().split("/")
    if len(parts) == 1 and parts[0].isdigit():
        return viewer.username, int(parts[0])
    if len(parts) == 3 and parts[1] == "search" and parts[2].isdigit():
        return parts[0], int(parts[2])
    raise NotFound(f"no search {ident!r}: a search id reads USER/search/N")


def find(viewer: User, username: str, number: int, *, change: bool = False) -> Search:
    """The search, if `viewer` may see it (its owner, an administrator, a teammate of the
    owner); 404 otherwise. With `change`, only its owner and administrators."""
    search = db.session.scalar(
        select(Search)
        .join(User, Search.user_id == User.id)
        .where(User.username == username, Search.number == number)
    )
    if search is None:
        raise NotFound(f"no search {username}/search/{number}")
    session_service.check_visible(viewer, search.user, f"search {search.ident}", change=change)
    return search


def listing(viewer: User, *, everyone: bool = False, limit: int = 100) -> list[Search]:
    query = select(Search).options(selectinload(Search.user)).order_by(Search.id.desc())
    if not (everyone and viewer.is_admin):
        query = query.where(Search.user_id == viewer.id)
    return list(db.session.scalars(query.limit(limit)))


def stop(search: Search, redis=None, reason: str = "") -> Search:
    """Stop the search and every session of it that has not ended."""
    if search.status != SearchStatus.RUNNING.value:
        raise Conflict(f"search {search.ident} has already ended ({search.status})")
    _end(search, SearchStatus.STOPPED, reason or "stopped by its owner")
    for trial in search.trials:
        if trial.state == TrialState.RUNNING.value:
            _end_trial(trial, TrialState.STOPPED, "stopped with its search", redis)
    db.session.commit()
    return search


# The driver ----------------------------------------------------------------------------


def advance_all(redis=None) -> int:
    """Advance every running search (the scheduler's housekeeping); how many moved."""
    ids = list(
        db.session.scalars(select(Search.id).where(Search.status == SearchStatus.RUNNING.value))
    )
    moved = 0
    for search_id in ids:
        try:
            moved += advance(search_id, redis)
        except Exception:
            log.exception("advancing search %s failed", search_id)
            db.session.rollback()
    return moved


def advance(search_id: int, redis=None) -> bool:
    """One turn of one search's driver: what its trials did, then what starts or stops.
    True when something changed."""
    search = db.session.scalar(
        select(Search).where(Search.id == search_id).with_for_update(of=Search)
    )
    if search is None or search.status != SearchStatus.RUNNING.value:
        db.session.rollback()
        return False
    spec = search_space.spec_from_dict(search.spec)
    changed = False
    running = [t for t in search.trials if t.state == TrialState.RUNNING.value]
    for trial in running:
        changed |= _observe(search, spec, trial, redis)
    if spec.algorithm == "pbt":
        changed |= _pbt_turn(search, spec, redis)
    changed |= _update_best(search, spec)
    spent = _budget_spent(search, spec)
    if spent and spent.startswith("now:"):
        # Time or GPU-hours ran out: what runs is stopped.
        for trial in search.trials:
            if trial.state == TrialState.RUNNING.value:
                _end_trial(
                    trial, TrialState.STOPPED, f"its search's budget ran out ({spent[4:]})", redis
                )
                changed = True
    failed_run = _failures_in_a_row(search)
    if failed_run:
        for trial in search.trials:
            if trial.state == TrialState.RUNNING.value:
                _end_trial(trial, TrialState.STOPPED, "its search failed", redis)
        _end(search, SearchStatus.FAILED, failed_run)
        db.session.commit()
        return True
    if not spent:
        changed |= _start_trials(search, spec, redis)
        if search.status != SearchStatus.RUNNING.value:
            db.session.commit()
            return True
    still = [t for t in search.trials if t.state == TrialState.RUNNING.value]
    if not still:
        more = spec.algorithm != "grid" or len(search.trials) < search_space.grid_size(spec)
        if spent or not more or (spec.algorithm == "pbt" and search.trials):
            if all(t.value is None for t in search.trials):  # a done trial has a value
                _end(search, SearchStatus.FAILED, "no trial reported " + spec.metric)
            else:
                _end(search, SearchStatus.DONE, _done_reason(search, spec, spent))
                if spec.algorithm == "asha":
                    _settle_asha(search, spec)
            changed = True
    elif changed or search.status_reason.startswith("starting"):
        search.status_reason = f"{len(still)} running, {len(search.trials)} started"
    db.session.commit()
    return changed


def _done_reason(search: Search, spec: Spec, spent: str | None) -> str:
    if spec.algorithm == "pbt":
        latest = _members(search).values()
        there = [t for t in latest if t.state == TrialState.DONE.value and t.rung >= spec.steps]
        if len(there) == len(latest):
            return f"every member reached step {spec.steps}"
        if there:
            return f"{len(there)} of {len(latest)} members reached step {spec.steps}"
        reached = max((t.rung for t in latest if t.state == TrialState.DONE.value), default=0)
        return f"budget spent: {len(search.trials)} sessions, members at step {reached}"
    if spent:
        return f"budget spent: {spent.removeprefix('now:')}"
    if spec.algorithm == "grid":
        return f"every point of the grid ran ({search_space.grid_size(spec)})"
    return "every member finished"


def _budget_spent(search: Search, spec: Spec) -> str | None:
    """What of the budget is spent, or None. 'now:...' where running trials must stop
    (wall time, GPU-hours); plain where only no new trial may start (sessions)."""
    elapsed = utcnow() - search.created_at
    if spec.minutes is not None and elapsed >= timedelta(minutes=spec.minutes):
        return f"now:{spec.minutes:g} minutes"
    if spec.gpu_hours is not None:
        used = gpu_hours_used(search)
        if used >= spec.gpu_hours:
            return f"now:{spec.gpu_hours:g} GPU-hours"
    if spec.sessions is not None and len(search.trials) >= spec.sessions:
        return f"{spec.sessions} sessions"
    return None


def gpu_hours_used(search: Search) -> float:
    total = 0.0
    for trial in search.trials:
        session = trial.session
        if session is None:
            continue
        seconds = session_service.duration(session) or 0.0
        total += session.gpu_amount * seconds / 3600
    return total


def _failures_in_a_row(search: Search) -> str | None:
    ended = [t for t in search.trials if t.state != TrialState.RUNNING.value]
    if any(t.state == TrialState.DONE.value or t.value is not None for t in ended):
        return None
    failed = [t for t in ended if t.state == TrialState.FAILED.value]
    if len(failed) >= FAILURES_IN_A_ROW:
        return f"its first {len(failed)} trials failed: {failed[0].note}"
    return None


def _observe(search: Search, spec: Spec, trial: SearchTrial, redis) -> bool:
    """Read what a running trial's session did; end the trial when its session ended."""
    session = trial.session
    if session is None:
        trial.state, trial.note, trial.ended_at = (
            TrialState.FAILED.value,
            "its session was removed",
            utcnow(),
        )
        return True
    series = db.session.get(ScalarSeries, (session.id, spec.metric))
    changed = False
    if (
        series is not None
        and series.count
        and (trial.step != series.last_step or trial.value != series.last_value)
    ):
        trial.value, trial.step = float(series.last_value), int(series.last_step)
        changed = True
    state = session.state
    if state.is_final:
        trial.ended_at = utcnow()
        if state is SessionStatus.COMPLETED and trial.value is not None:
            trial.state = TrialState.DONE.value
        elif state is SessionStatus.COMPLETED:
            trial.state = TrialState.FAILED.value
            trial.note = f"its session completed without reporting {spec.metric}"
        elif session.stop_requested and not session.stop_reason:
            trial.state, trial.note = (
                TrialState.STOPPED.value,
                f"{session.ident} was stopped by hand",
            )
        else:
            trial.state = TrialState.FAILED.value
            trial.note = f"{session.ident} {session.status}: {session.status_reason}".strip()
        return True
    return changed


def _pbt_turn(search: Search, spec: Spec, redis) -> bool:
    """Once every member's segment ended, the next generation: the bottom quantile goes
    on from a top member's checkpoint with its hyperparameters perturbed, the rest from
    their own, each a fork trained up to the next boundary."""
    latest = _members(search)
    if not latest or any(t.state == TrialState.RUNNING.value for t in latest.values()):
        return False
    alive = {
        m: t for m, t in latest.items() if t.state == TrialState.DONE.value and t.value is not None
    }
    if not alive:
        return False
    reached = max(t.rung for t in alive.values())
    if reached >= spec.steps:
        return False
    if spec.sessions is not None and spec.sessions - len(search.trials) < len(alive):
        return False  # not a whole generation left in the budget
    values = {m: t.value for m, t in alive.items() if t.value is not None}
    bottom, top = search_space.bottom_and_top(spec, values)
    rng = random.Random(f"{search.id}:{len(search.trials)}:{spec.seed}")
    end = min(reached + spec.interval, spec.steps)
    for member, trial in sorted(alive.items()):
        source, params = trial, dict(trial.params)
        donors = [alive[d] for d in top if d != member]
        if member in bottom and donors:
            source = rng.choice(donors)
            params = search_space.explore(spec, dict(source.params), rng)
        taken = "its own" if source is trial else f"member {source.member}'s"
        made = _segment(
            search,
            spec,
            source,
            member=member,
            params=params,
            start=reached,
            until=end,
            note=f"from {taken} checkpoint {reached} ({source.value:.4g})",
        )
        if made is None:
            trial.note = f"it saved no checkpoint at step {reached}: member {member} ends here"
    db.session.flush()
    db.session.expire(search, ["trials"])
    if redis is not None:
        db.session.commit()
        session_service.wake(redis)
    return True


def _members(search: Search) -> dict[int, SearchTrial]:
    """PBT: each member's latest trial; ASHA: each configuration's."""
    latest: dict[int, SearchTrial] = {}
    for trial in search.trials:
        if trial.member not in latest or trial.number > latest[trial.member].number:
            latest[trial.member] = trial
    return latest


def _segment(
    search: Search,
    spec: Spec,
    source: SearchTrial,
    *,
    member: int,
    params: dict[str, Any],
    start: int,
    until: int,
    note: str,
) -> SearchTrial | None:
    """A trial that goes on from `source`'s checkpoint at step `start` up to `until` (a
    fork of its session, told where to stop); None where no such checkpoint was saved."""
    saved = _checkpoint_at(source, start)
    if saved is None or source.session is None:
        return None
    session = session_service.fork(
        search.user,
        source.session,
        args=search_space.command_args(spec, params, until=until),
        checkpoint=saved,
        store=None,
        commit=False,
    )
    kind = "member" if spec.algorithm == "pbt" else "configuration"
    session.memo = f"{search.ident}: {kind} {member}, steps {int(saved) + 1}-{until}"
    trial = SearchTrial(
        search_id=search.id,
        number=len(search.trials) + 1,
        session_id=session.id,
        params=params,
        member=member,
        parent_id=source.id,
        checkpoint=saved,
        rung=until,
        note=note,
    )
    db.session.add(trial)
    db.session.flush()
    db.session.expire(search, ["trials"])
    return trial


def _asha_table(
    search: Search, spec: Spec
) -> tuple[list[int], list[dict[int, float]], dict[tuple[int, int], SearchTrial], set]:
    """ASHA's state from the trials: the rungs' steps, each configuration's value at each
    rung it reached, the trial that reached it, and the (configuration, rung) pairs it
    went on from already (or cannot: no checkpoint there)."""
    steps = search_space.rung_steps(spec)
    at_rungs: list[dict[int, float]] = [{} for _ in steps]
    ended: dict[tuple[int, int], SearchTrial] = {}
    promoted: set[tuple[int, int]] = set()
    by_id = {t.id: t for t in search.trials}
    for trial in search.trials:
        parent = by_id.get(trial.parent_id) if trial.parent_id is not None else None
        if parent is not None and parent.rung in steps:
            promoted.add((parent.member, steps.index(parent.rung)))
        if trial.value is None or trial.rung not in steps:
            continue
        if trial.state in (TrialState.DONE.value, TrialState.PRUNED.value):
            rung = steps.index(trial.rung)
            at_rungs[rung][trial.member] = trial.value
            ended[trial.member, rung] = trial
            if trial.state == TrialState.PRUNED.value:
                promoted.add((trial.member, rung))  # it cannot go on
    return steps, at_rungs, ended, promoted


def _asha_job(search: Search, spec: Spec) -> tuple[SearchTrial, int] | None:
    """ASHA's next promotion: the trial a configuration goes on from, and the rung."""
    _steps, at_rungs, ended, promoted = _asha_table(search, spec)
    job = search_space.promotion(spec, at_rungs, promoted)
    if job is None:
        return None
    member, rung = job
    return ended[member, rung], rung


def _settle_asha(search: Search, spec: Spec) -> None:
    """As an ASHA search ends: each configuration that stopped below the last rung and
    was not in the top 1/eta there is marked pruned; one that was says the budget ran
    out before it went on."""
    steps, at_rungs, _ended, _promoted = _asha_table(search, spec)
    for member, trial in _members(search).items():
        if trial.state != TrialState.DONE.value or trial.rung not in steps[:-1]:
            continue
        values = at_rungs[steps.index(trial.rung)]
        ranked = sorted(values, key=lambda m: values[m], reverse=spec.maximize)
        if member in ranked[: len(values) // spec.eta]:
            trial.note = (
                f"in the top 1/{spec.eta} at step {trial.rung}: the budget ran out before it "
                "went on"
            )
            continue
        if len(values) < spec.eta:
            trial.note = (
                f"at step {trial.rung} with fewer than {spec.eta} there: the budget ran out "
                "before it could go on"
            )
            continue
        trial.state = TrialState.PRUNED.value
        trial.note = (
            f"stopped at step {trial.rung}: not in the top 1/{spec.eta} of the {len(values)} there"
        )


def _checkpoint_at(trial: SearchTrial, step: int) -> str | None:
    """The name of the checkpoint a trial's session saved at `step` (`sdk.save(step)`),
    else at the highest step it saved."""
    if trial.session is None:
        return None
    names = list(
        db.session.scalars(select(Checkpoint.name).where(Checkpoint.session_id == trial.session.id))
    )
    if str(step) in names:
        return str(step)
    steps = sorted((int(n), n) for n in names if n.isdigit())
    return steps[-1][1] if steps else None


def _start_trials(search: Search, spec: Spec, redis) -> bool:
    running = sum(1 for t in search.trials if t.state == TrialState.RUNNING.value)
    started = False
    while running < spec.parallel:
        if spec.sessions is not None and len(search.trials) >= spec.sessions:
            break
        if spec.algorithm == "pbt" and len({t.member for t in search.trials}) >= spec.parallel:
            break  # the population is made: members are replaced, not added
        if spec.algorithm == "asha" and (job := _asha_job(search, spec)) is not None:
            source, rung = job
            steps = search_space.rung_steps(spec)
            made = _segment(
                search,
                spec,
                source,
                member=source.member,
                params=dict(source.params),
                start=steps[rung],
                until=steps[rung + 1],
                note=f"promoted: in the top 1/{spec.eta} at step {steps[rung]}",
            )
            if made is None:
                source.state = TrialState.PRUNED.value
                source.note = f"it saved no checkpoint at step {steps[rung]}: it cannot go on"
            else:
                running += 1
                started = True
            continue
        # A configuration's first trial stands for it (ASHA's later rungs are the same).
        firsts = [t for t in search.trials if t.parent_id is None]
        past = [
            Past(
                dict(t.params),
                t.value if t.state in (TrialState.DONE.value, TrialState.PRUNED.value) else None,
                failed=t.state == TrialState.FAILED.value,
                pruned=t.state == TrialState.PRUNED.value,
            )
            for t in firsts
        ]
        params = search_space.next_params(spec, past)
        if params is None:
            break
        until = {"pbt": min(spec.interval, spec.steps), "asha": spec.min_steps}.get(spec.algorithm)
        template = search.template
        request = session_service.SessionRequest(
            entry=template["entry"],
            code_digest=template["code_digest"],
            code_bytes=template["code_bytes"],
            args=search_space.command_args(spec, params, until=until),
            gpus=template["gpus"],
            gpu_milli=template["gpu_milli"],
            gpu_memory_mb=template["gpu_memory_mb"],
            cpus=template["cpus"],
            memory_mb=template["memory_mb"],
            image=template["image"],
            environment=template["environment"],
            gpu_models=tuple(template["gpu_models"]),
            datasets=tuple(template["datasets"]),
            memo=f"{search.ident}: trial {len(search.trials) + 1}",
        )
        try:
            session = session_service.create_session(search.user, request, commit=False)
            member = len({t.member for t in search.trials}) if until is not None else 0
            if until is not None:
                kind = "member" if spec.algorithm == "pbt" else "configuration"
                session.memo = f"{search.ident}: {kind} {member}, steps 1-{until}"
        except ApiError as exc:
            # A dataset removed since, a level lost: the search cannot go on.
            db.session.rollback()
            search = db.session.get(Search, search.id)  # type: ignore[assignment]
            _end(search, SearchStatus.FAILED, f"its next trial could not start: {exc.message}")
            return True
        db.session.add(
            SearchTrial(
                search_id=search.id,
                number=len(search.trials) + 1,
                session_id=session.id,
                params=params,
                member=member,
                rung=until if until is not None else -1,
            )
        )
        db.session.flush()
        db.session.expire(search, ["trials"])
        running += 1
        started = True
    if started and redis is not None:
        db.session.commit()
        session_service.wake(redis)
    return started


def _update_best(search: Search, spec: Spec) -> bool:
    sign = 1.0 if spec.maximize else -1.0
    scored = [
        (sign * t.value, -t.number, t)
        for t in search.trials
        if t.value is not None and t.state != TrialState.FAILED.value
    ]
    if not scored:
        return False
    _key, _order, best = max(scored, key=lambda s: (s[0], s[1]))
    if (search.best_trial, search.best_value) == (best.number, best.value):
        return False
    search.best_trial, search.best_value = best.number, best.value
    return True


def _end_trial(trial: SearchTrial, state: TrialState, note: str, redis) -> None:
    trial.state, trial.note, trial.ended_at = state.value, note, utcnow()
    session = trial.session
    if session is not None and session.state.is_active:
        session_service.request_stop(session, redis, reason=f"{trial.search.ident}: {note}")


def _end(search: Search, status: SearchStatus, reason: str) -> None:
    search.status, search.status_reason, search.ended_at = status.value, reason, utcnow()


# What the API and pages show -----------------------------------------------------------


def trial_dict(trial: SearchTrial) -> dict[str, Any]:
    session = trial.session
    return {
        "number": trial.number,
        "session": session.ident if session is not None else None,
        "session_status": session.status if session is not None else None,
        "params": trial.params,
        "state": trial.state,
        "value": trial.value,
        "step": trial.step,
        "member": trial.member,
        "parent": trial_number(trial.parent_id),
        "checkpoint": trial.checkpoint or None,
        "note": trial.note,
        "created_at": isoformat(trial.created_at),
        "ended_at": isoformat(trial.ended_at),
    }


def trial_number(trial_id: int | None) -> int | None:
    if trial_id is None:
        return None
    trial = db.session.get(SearchTrial, trial_id)
    return trial.number if trial is not None else None


def search_dict(search: Search, *, trials: bool = True) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for trial in search.trials:
        counts[trial.state] = counts.get(trial.state, 0) + 1
    found = {
        "id": search.ident,
        "user": search.user.username,
        "number": search.number,
        "algorithm": search.algorithm,
        "metric": search.metric,
        "direction": search.direction,
        "status": search.status,
        "status_reason": search.status_reason,
        "spec": search.spec,
        "entry": search.template.get("entry"),
        "memo": search.memo,
        "best": {"trial": search.best_trial, "value": search.best_value}
        if search.best_trial is not None
        else None,
        "trial_counts": counts,
        "gpu_hours_used": round(gpu_hours_used(search), 4),
        "created_at": isoformat(search.created_at),
        "ended_at": isoformat(search.ended_at),
    }
    if trials:
        found["trials"] = [trial_dict(t) for t in search.trials]
    return found


def lineage(search: Search) -> list[dict[str, Any]]:
    """PBT: each member's chain of segments, first to last: the trial, its session, the
    hyperparameters it trained with, the step it trained up to, its metric there, and
    whose checkpoint it went on from (its own member's, or another's: an exploit)."""
    by_id = {t.id: t for t in search.trials}
    members: dict[int, list[dict[str, Any]]] = {}
    for trial in search.trials:
        parent = by_id.get(trial.parent_id) if trial.parent_id is not None else None
        members.setdefault(trial.member, []).append(
            {
                "trial": trial.number,
                "session": trial.session.ident if trial.session is not None else None,
                "state": trial.state,
                "params": trial.params,
                "until": trial.rung,
                "value": trial.value,
                "from_member": parent.member if parent is not None else None,
                "from_trial": parent.number if parent is not None else None,
                "checkpoint": trial.checkpoint or None,
                "exploited": parent is not None and parent.member != trial.member,
            }
        )
    return [{"member": m, "segments": chain} for m, chain in sorted(members.items())]
