"""Request and response schemas: they validate input and document the API."""

from datetime import UTC

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from portal.routing import DATABASE_INT_MAX
from portal.services.competitions.entrants import TEAM_NAME, TEAM_NAME_RULE
from portal.services.competitions.spec_schema import ACCEPTS, METRIC_NAMES


class Int(fields.Integer):
    """An integer that fits the database's integer columns; larger ones are refused as
    bad input (not an overflow deep in a query)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.validators.insert(
            0,
            validate.Range(
                min=-DATABASE_INT_MAX - 1,
                max=DATABASE_INT_MAX,
                error="must be a number from {min} to {max}",
            ),
        )


class ErrorBody(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)
    details = fields.Dict()


class ErrorEnvelope(Schema):
    error = fields.Nested(ErrorBody, required=True)


class LoginIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    label = fields.String(load_default="cli", validate=validate.Length(max=64))


class SignupIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=8, max=1024))
    email = fields.Email(load_default=None, allow_none=True)
    # Where sign-up needs one: a code an administrator made (`podium user invite`).
    invitation = fields.String(load_default=None, allow_none=True)


class LimitsOut(Schema):
    max_code_bytes = Int()


class UserOut(Schema):
    username = fields.String()
    is_admin = fields.Boolean()
    level = fields.String()
    active = fields.Boolean()
    email = fields.String(allow_none=True)


class UserAdminOut(UserOut):
    credit = fields.Float()
    created_at = fields.DateTime()


class UserChangeIn(Schema):
    level = fields.String(validate=validate.OneOf(["user", "organiser", "trusted", "admin"]))
    active = fields.Boolean()


class InvitationIn(Schema):
    uses = Int(load_default=1, validate=validate.Range(min=1, max=10_000))
    days = Int(load_default=7, validate=validate.Range(min=1, max=365))


class InvitationOut(Schema):
    code = fields.String()
    uses = Int()
    expires_at = fields.String()


class MeOut(UserOut):
    limits = fields.Nested(LimitsOut)


class TokenOut(Schema):
    token = fields.String()
    expires_at = fields.String()
    user = fields.Nested(UserOut)


class HealthOut(Schema):
    status = fields.String()
    parts = fields.Dict(keys=fields.String(), values=fields.Dict())


class CodeOut(Schema):
    digest = fields.String()
    size = Int()


def _gpu_count(value: float) -> None:
    # A share's least is the service's to say (`sessions.gpu_share_refusal`).
    if not (value == int(value) and 0 <= value <= 64) and not (
        0.001 <= value < 1 and abs(value * 1000 - round(value * 1000)) < 1e-6
    ):
        raise ValidationError(
            "GPUs are a whole number from 0 to 64, or a share of one GPU in thousandths (0.25)"
        )


class SessionIn(Schema):
    entry = fields.String(required=True, validate=validate.Length(min=1, max=512))
    code_digest = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{64}$"))
    args = fields.String(load_default="", validate=validate.Length(max=8192))
    gpus = fields.Float(
        load_default=0,
        validate=_gpu_count,
        metadata={"description": "whole GPUs (0-64), or a share of one GPU (0.05-0.999)"},
    )
    gpu_memory_mb = Int(
        load_default=0,
        validate=validate.Range(min=0, max=2**24),
        metadata={"description": "a share of one GPU: this much of its memory (not with gpus)"},
    )
    cpus = fields.Float(load_default=None, allow_none=True, validate=validate.Range(min=0.1))
    memory_mb = Int(load_default=None, allow_none=True, validate=validate.Range(min=16, max=2**40))
    image = fields.String(load_default="", validate=validate.Length(max=256))
    gpu_models = fields.List(
        fields.String(validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")),
        load_default=list,
        validate=validate.Length(max=8),
    )
    datasets = fields.List(
        fields.String(validate=validate.Regexp(r"^[a-z0-9][a-z0-9._-]{0,63}(:[0-9]{1,9})?$")),
        load_default=list,
        validate=validate.Length(max=32),
    )
    memo = fields.String(load_default="", validate=validate.Length(max=4096))
    stall_minutes = Int(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=7 * 24 * 60),
        metadata={"description": "flag it stalled after this many quiet minutes"},
    )


class SessionOut(Schema):
    id = fields.String(metadata={"description": "USER/N, or grade/ID for a grading session"})
    user = fields.String()
    number = Int()
    kind = fields.String(metadata={"description": "training, or grading (a submission's)"})
    status = fields.String()
    status_reason = fields.String()
    entry = fields.String()
    args = fields.String()
    command = fields.String()
    gpus = Int(metadata={"description": "whole GPUs; 0 for a share of one (gpu_share)"})
    gpu_memory_mb = Int(allow_none=True, metadata={"description": "a share of one GPU's memory"})
    gpu_share = fields.Float(
        allow_none=True,
        metadata={
            "description": "the share of one GPU it takes (its memory cap); a share by "
            "memory is known once it is placed"
        },
    )
    cpus = fields.Float()
    memory_mb = Int()
    image = fields.String()
    environment = fields.String(metadata={"description": "podium/env:<digest>, or empty"})
    gpu_models = fields.List(fields.String())
    datasets = fields.List(fields.String())
    memo = fields.String()
    forked_from = fields.String(allow_none=True)
    resume_checkpoint = fields.String(allow_none=True)
    node = fields.String(allow_none=True)
    gpu_indices = fields.List(Int())
    exit_code = Int(allow_none=True)
    code_digest = fields.String()
    stall_minutes = Int(allow_none=True)
    stalled_since = fields.String(allow_none=True)
    saves_on_signal = fields.Boolean()
    credit_stop_at = fields.String(
        allow_none=True, metadata={"description": "its owner ran out of credit: it stops then"}
    )
    created_at = fields.String(allow_none=True)
    scheduled_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    ended_at = fields.String(allow_none=True)


class SessionListArgs(Schema):
    all = fields.Boolean(load_default=False)
    limit = Int(load_default=200, validate=validate.Range(min=1, max=1000))
    offset = Int(load_default=0, validate=validate.Range(min=0))
    status = fields.String(load_default=None)
    user = fields.String(load_default=None)
    entry = fields.String(load_default=None)
    memo = fields.String(load_default=None)
    arg = fields.String(load_default=None, metadata={"description": "NAME=VALUE"})
    metric = fields.String(load_default=None, metadata={"description": "order by this tag"})
    by = fields.String(load_default="last", validate=validate.OneOf(["last", "min", "max"]))
    order = fields.String(load_default="desc", validate=validate.OneOf(["asc", "desc"]))


class LogLineOut(Schema):
    seq = Int()
    text = fields.String()


BIGINT = 2**62  # what the database's integer columns hold, with room to spare


class LogsArgs(Schema):
    after = Int(load_default=-1, validate=validate.Range(min=-1, max=BIGINT))
    limit = Int(load_default=1000, validate=validate.Range(min=1, max=10000))


class LogsOut(Schema):
    session = fields.Nested(SessionOut)
    lines = fields.List(fields.Nested(LogLineOut))


class EventsIn(Schema):
    """Checked by `portal/services/metrics.py` with numpy, not field by field here: this
    is the hottest write path."""

    scalars = fields.Raw(
        load_default=None, metadata={"description": "{TAG: {step, value, wall_time}}"}
    )
    events = fields.Raw(
        load_default=None, metadata={"description": "[{tag, step, value, wall_time}]"}
    )
    stream = fields.String(load_default=None, allow_none=True)
    seq = Int(load_default=None, allow_none=True)


class EventsArgs(Schema):
    tag = fields.String(load_default=None)
    after = Int(load_default=0, validate=validate.Range(min=0, max=BIGINT))


class EventOut(Schema):
    tag = fields.String()
    step = Int()
    value = fields.Float()
    wall_time = fields.Float()


class EventsOut(Schema):
    events = fields.List(fields.Nested(EventOut))
    cursor = Int()


class ScalarsArgs(Schema):
    tag = fields.String(required=True, validate=validate.Length(min=1, max=128))
    points = Int(load_default=None, validate=validate.Range(min=2, max=20000))
    start = Int(load_default=None)
    end = Int(load_default=None)


class SeriesOut(Schema):
    tag = fields.String()
    count = Int()
    first_step = Int()
    last_step = Int()
    last_value = fields.Float()
    min_value = fields.Float()
    max_value = fields.Float()
    last_wall_time = fields.Float()


class AcceptedOut(Schema):
    accepted = Int()


class CommandOut(Schema):
    command = fields.String()


class CheckpointOut(Schema):
    name = fields.String()
    size = Int()
    digest = fields.String()
    created_at = fields.String()
    step = Int(allow_none=True)
    scalars = fields.Dict(keys=fields.String(), values=fields.Float())


class SessionPatchIn(Schema):
    memo = fields.String(required=True)


class ResumeIn(Schema):
    checkpoint = fields.String(load_default=None, validate=validate.Length(max=128))


class NodeGpuOut(Schema):
    index = Int()
    model = fields.String()
    uuid = fields.String()
    memory_mb = Int()
    simulated = fields.Boolean()
    session = fields.String(allow_none=True)
    utilization_percent = Int(allow_none=True)
    memory_used_mb = Int(allow_none=True)


class NodeOut(Schema):
    name = fields.String()
    status = fields.String()
    runtime = fields.String()
    isolating = fields.Boolean()
    operators = fields.List(fields.String())
    hostname = fields.String()
    cpu_count = Int()
    memory_mb = Int()
    last_heartbeat_at = fields.String()
    sample = fields.Dict()
    images = fields.List(fields.String())
    datasets = fields.List(fields.String())
    gpus = fields.List(fields.Nested(NodeGpuOut))


class GpuIn(Schema):
    index = Int(required=True, validate=validate.Range(min=0, max=1023))
    uuid = fields.String(load_default="")
    model = fields.String(load_default="")
    memory_mb = Int(load_default=0, validate=validate.Range(min=0, max=2**40))
    simulated = fields.Boolean(load_default=False)


class NodeRegisterIn(Schema):
    # The cluster's join token; a node registered already may instead send its own
    # node token as the bearer, and keeps its name.
    join_token = fields.String(load_default="")
    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    hostname = fields.String(load_default="")
    cpu_count = Int(required=True, validate=validate.Range(min=1, max=2**20))
    memory_mb = Int(required=True, validate=validate.Range(min=1, max=2**40))
    runtime = fields.String(load_default="local", validate=validate.OneOf(["local", "docker"]))
    # A node that cannot isolate sessions from its agent runs only these users' sessions
    # (empty: any trusted user's).
    operators = fields.List(
        fields.String(validate=validate.Length(max=64)),
        load_default=list,
        validate=validate.Length(max=100),
    )
    gpus = fields.List(fields.Nested(GpuIn), load_default=list)

    @validates_schema
    def distinct_gpus(self, data, **_kwargs):
        indices = [gpu["index"] for gpu in data.get("gpus", [])]
        if len(indices) != len(set(indices)):
            raise ValidationError("two GPUs have the same index", "gpus")


class NodeRegisterOut(Schema):
    node_token = fields.String()


class NodeWorkIn(Schema):
    wait = fields.Float(load_default=20.0, validate=validate.Range(min=0, max=25))


class NodeWorkOut(Schema):
    jobs = fields.List(fields.Dict())


class NodeJobResultIn(Schema):
    result = fields.Dict(load_default=dict)


class JoinTokenOut(Schema):
    join_token = fields.String()


class NodeRemovedOut(Schema):
    name = fields.String()
    lost = fields.List(fields.String())


class EnvironmentImageIn(Schema):
    tag = fields.String(required=True, validate=validate.Length(max=256))
    size_bytes = Int(load_default=0, validate=validate.Range(min=0))
    last_used_at = fields.String(load_default="", validate=validate.Length(max=40))
    in_use = fields.Boolean(load_default=False)


class EnvironmentImageOut(Schema):
    node = fields.String()
    tag = fields.String()
    size_bytes = Int()
    last_used_at = fields.String()
    in_use = fields.Boolean()


class HeartbeatIn(Schema):
    sample = fields.Dict(load_default=dict)
    running = fields.List(Int(), load_default=list)
    images = fields.List(fields.String(), load_default=None, allow_none=True)
    datasets = fields.List(fields.String(), load_default=None, allow_none=True)
    environments = fields.List(
        fields.Nested(EnvironmentImageIn), load_default=None, allow_none=True
    )


class HeartbeatOut(Schema):
    lost = fields.List(Int())
    ended = fields.List(Int())


class MountOut(Schema):
    mount = fields.String()
    ref = fields.String()
    digest = fields.String()
    content_digest = fields.String()
    size_bytes = Int()


class GradingSpecOut(Schema):
    inputs_digest = fields.String()
    checkpoint = fields.String()
    checkpoint_digest = fields.String()
    time_limit_s = Int()


class SessionSpecOut(Schema):
    session_id = Int()
    ident = fields.String()
    status = fields.String()
    owner = fields.String()
    trusted = fields.Boolean()
    entry = fields.String()
    args = fields.List(fields.String())
    code_digest = fields.String()
    gpu_indices = fields.List(Int())
    gpu_share = fields.Float(
        allow_none=True, metadata={"description": "the share of its one GPU it may use"}
    )
    cpus = fields.Float()
    memory_mb = Int()
    image = fields.String()
    environment = fields.String()
    token = fields.String()
    resume = fields.String()
    mode = fields.String(
        metadata={"description": "train, serve (answer a server's predictions) or infer"}
    )
    api_url = fields.String()
    datasets = fields.List(fields.Nested(MountOut))
    grading = fields.Nested(GradingSpecOut, allow_none=True)


class StateIn(Schema):
    status = fields.String(
        required=True,
        validate=validate.OneOf(["running", "completed", "failed", "killed", "stopped", "lost"]),
    )
    exit_code = Int(load_default=None, allow_none=True)
    reason = fields.String(load_default="")


class LogLineIn(Schema):
    seq = Int(required=True, validate=validate.Range(min=0, max=BIGINT))
    text = fields.String(required=True)


class LogsIn(Schema):
    lines = fields.List(
        fields.Nested(LogLineIn), required=True, validate=validate.Length(max=10000)
    )


class DrainIn(Schema):
    drained = fields.Boolean(load_default=True)
    migrate = fields.Boolean(
        load_default=False,
        metadata={
            "description": "move the running sessions that bound `save` to other nodes, each"
            " from a checkpoint it saves now"
        },
    )


class DrainOut(NodeOut):
    migrating = fields.List(fields.String(), metadata={"description": "sessions moving"})
    left_to_finish = fields.List(
        fields.String(), metadata={"description": "sessions that bound no `save`"}
    )


class CreditRatesOut(Schema):
    gpu_hour = fields.Float()
    cpu_hour = fields.Float()


class CreditStopOut(Schema):
    session = fields.String()
    stops_at = fields.DateTime()


class CreditOut(Schema):
    username = fields.String()
    credit = fields.Float()
    rates = fields.Nested(CreditRatesOut)
    burn_per_hour = fields.Float()
    running = Int()
    stopping_for_credit = fields.List(fields.Nested(CreditStopOut))


class CreditEntryOut(Schema):
    id = Int()
    kind = fields.String()
    amount = fields.Float()
    gpu_hours = fields.Float()
    cpu_hours = fields.Float()
    balance_after = fields.Float()
    session = fields.String(allow_none=True)
    reason = fields.String()
    by = fields.String(allow_none=True)
    created_at = fields.DateTime()
    period_start = fields.DateTime(allow_none=True)
    period_end = fields.DateTime(allow_none=True)


class LedgerArgs(Schema):
    limit = Int(load_default=100, validate=validate.Range(min=1, max=1000))
    before = Int(load_default=None, allow_none=True)


class CreditIn(Schema):
    # Checked by the service (a positive, finite number): one message for every caller.
    amount = fields.Raw(required=True)
    reason = fields.String(load_default="", validate=validate.Length(max=500))


class RefundIn(CreditIn):
    session = fields.String(load_default=None, allow_none=True)


class ExecIn(Schema):
    command = fields.List(
        fields.String(validate=validate.Length(max=4096)),
        required=True,
        validate=validate.Length(min=1, max=256),
    )
    timeout = fields.Float(load_default=60.0, validate=validate.Range(min=1, max=600))


class ExecOut(Schema):
    exit_code = Int()
    output = fields.String()


class DatasetVersionOut(Schema):
    number = Int()
    ref = fields.String()
    size_bytes = Int()
    file_count = Int()
    content_digest = fields.String()
    created_at = fields.String()


class DatasetOut(Schema):
    name = fields.String()
    owner = fields.String()
    visibility = fields.String()
    team = fields.String(allow_none=True)
    description = fields.String()
    versions = fields.List(fields.Nested(DatasetVersionOut))
    size_bytes = Int()
    sessions_only = fields.Boolean(
        metadata={"description": "sessions mount it; only its owner may download it"}
    )
    created_at = fields.String()
    last_accessed_at = fields.String()


class PushArgs(Schema):
    visibility = fields.String(
        load_default=None, validate=validate.OneOf(["public", "private", "team"])
    )
    team = fields.String(load_default=None, validate=validate.Length(max=64))
    description = fields.String(load_default=None, validate=validate.Length(max=4096))


class PushOut(Schema):
    dataset = fields.Nested(DatasetOut)
    version = fields.Nested(DatasetVersionOut)
    created = fields.Boolean()


class TeamIn(Schema):
    name = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9][a-z0-9._-]{1,63}$"))


class MemberIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))


class TeamOut(Schema):
    name = fields.String()
    members = fields.List(fields.String())


class TeamInvitationOut(Schema):
    team = fields.String()
    user = fields.String(metadata={"description": "the invited user"})
    invited_by = fields.String()
    members = fields.List(
        fields.String(), metadata={"description": "whom the user would share their work with"}
    )
    created_at = fields.String()


class TeamInvitationSentOut(TeamInvitationOut):
    # `name` and `members` are what clients of the old `team add` read back.
    name = fields.String(metadata={"description": "the team's name"})
    message = fields.String()


class ForkIn(Schema):
    args = fields.String(load_default=None, validate=validate.Length(max=8192))
    checkpoint = fields.String(load_default=None, validate=validate.Length(max=128))


# Competitions -------------------------------------------------------------------------

NAME = validate.Regexp(TEAM_NAME, error=TEAM_NAME_RULE)


class CompetitionEditIn(Schema):
    title = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=100_000))
    visibility = fields.String(validate=validate.OneOf(["public", "unlisted", "private"]))
    team_size_limit = Int(validate=validate.Range(min=1, max=100))


class RoundEditIn(Schema):
    name = fields.String(validate=validate.Length(max=200))
    starts_at = fields.AwareDateTime(default_timezone=UTC)
    ends_at = fields.AwareDateTime(default_timezone=UTC)
    metric = fields.String(validate=validate.OneOf(METRIC_NAMES))
    tolerance = fields.Float(
        allow_nan=False,
        validate=validate.Range(min=0, max=180, error="the tolerance is an angle from 0 to 180"),
    )
    higher_is_better = fields.Boolean()
    daily_quota = Int(validate=validate.Range(min=1))
    total_quota = Int(validate=validate.Range(min=1))
    public_fraction = fields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False))
    final_selections = Int(validate=validate.Range(min=1, max=20))
    advance_top = Int(allow_none=True, validate=validate.Range(min=1))
    time_limit_s = Int(validate=validate.Range(min=1, max=86400))
    memory_mb = Int(validate=validate.Range(min=64, max=2**20))
    publish_inputs = fields.Boolean()
    accepts = fields.String(validate=validate.OneOf(ACCEPTS))


class RoundOut(Schema):
    number = Int()
    name = fields.String()
    state = fields.String()
    starts_at = fields.String()
    ends_at = fields.String()
    dataset = fields.String()
    metric = fields.String()
    tolerance = fields.Float(allow_none=True)
    higher_is_better = fields.Boolean()
    rows = Int()
    daily_quota = Int()
    total_quota = Int()
    public_fraction = fields.Float()
    final_selections = Int()
    advance_top = Int(allow_none=True)
    time_limit_s = Int()
    memory_mb = Int()
    publish_inputs = fields.Boolean()
    accepts = fields.String()


class CompetitionOut(Schema):
    slug = fields.String()
    title = fields.String()
    description = fields.String()
    visibility = fields.String()
    team_size_limit = Int()
    organiser = fields.String()
    rounds = fields.List(fields.Nested(RoundOut))


class CompetitionTeamOut(Schema):
    name = fields.String()
    members = fields.List(fields.String())
    disqualified_reason = fields.String()
    invite_code = fields.String()
    invited = fields.List(fields.String())


class CompetitionTeamIn(Schema):
    name = fields.String(required=True, validate=NAME)


class InviteIn(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))


class JoinIn(Schema):
    team = fields.String(load_default=None, allow_none=True)
    code = fields.String(load_default=None, allow_none=True)


class MyTeamOut(Schema):
    team = fields.Nested(CompetitionTeamOut, allow_none=True)
    invitations = fields.List(fields.String())


class SubmitFileArgs(Schema):
    round = Int(load_default=None, allow_none=True, validate=validate.Range(min=1))
    memo = fields.String(load_default="", validate=validate.Length(max=1000))


class SubmitSessionIn(SubmitFileArgs):
    session = fields.String(
        required=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "USER/N or USER/N:CHECKPOINT (the latest without one)"},
    )


class SubmissionOut(Schema):
    id = Int()
    round = Int()
    team = fields.String()
    user = fields.String()
    source = fields.String()
    session = fields.String(allow_none=True)
    grading_session = fields.String(
        allow_none=True, metadata={"description": "the session that graded a checkpoint"}
    )
    status = fields.String(
        metadata={
            "description": "grading, scoring, scored, failed, invalid, errored (the platform "
            "failed to grade it: not counted) or disqualified"
        }
    )
    grading_attempts = Int(
        allow_none=True, metadata={"description": "grading sessions a model submission took"}
    )
    error = fields.String(allow_none=True)
    public_score = fields.Float(allow_none=True)
    private_score = fields.Float(allow_none=True)
    selected = fields.Boolean()
    disqualified_reason = fields.String(allow_none=True)
    memo = fields.String()
    provenance = fields.Dict(
        allow_none=True,
        metadata={
            "description": "a model submission's record: its session's code digest, "
            "arguments, environment, dataset versions, checkpoint and grading session"
        },
    )
    created_at = fields.String()
    scored_at = fields.String(allow_none=True)


class BundleImportArgs(Schema):
    slug = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "the new competition's slug (default: from its title)"},
    )
    metric = fields.String(
        load_default=None,
        allow_none=True,
        metadata={"description": "rank by this metric whatever the bundle's scoring"},
    )


class BundleImportOut(Schema):
    competition = fields.Nested(CompetitionOut)
    report = fields.List(
        fields.String(), metadata={"description": "what was not carried over, one per line"}
    )


class ScoresOut(Schema):
    public_score = fields.Float(allow_none=True)
    private_score = fields.Float(allow_none=True)


class OriginalOut(ScoresOut):
    status = fields.String()
    session = fields.String(allow_none=True, metadata={"description": "USER/N:CHECKPOINT"})
    checkpoint_digest = fields.String(allow_none=True)


class ReproducedOut(ScoresOut):
    checkpoint = fields.String(allow_none=True)
    checkpoint_digest = fields.String(allow_none=True)


class ReproductionOut(Schema):
    id = Int()
    submission = Int()
    round = Int()
    team = fields.String()
    status = fields.String(metadata={"description": "training, grading, scoring, scored or failed"})
    error = fields.String(allow_none=True)
    requested_by = fields.String(allow_none=True)
    training_session = fields.String(
        allow_none=True, metadata={"description": "the re-run: reproduce/ID"}
    )
    training_status = fields.String(allow_none=True)
    grading_session = fields.String(allow_none=True)
    original = fields.Nested(OriginalOut)
    reproduced = fields.Nested(ReproducedOut)
    difference = fields.Nested(
        ScoresOut, metadata={"description": "reproduced minus original, once both are scored"}
    )
    same_checkpoint = fields.Boolean(
        metadata={"description": "the re-run saved the very bytes the submission graded"}
    )
    stale = fields.Boolean(
        metadata={"description": "scored against labels or a metric the round has replaced"}
    )
    created_at = fields.String()
    finished_at = fields.String(allow_none=True)
    log_tail = fields.List(
        fields.String(),
        allow_none=True,
        metadata={"description": "the re-run's last printed lines (one reproduction's)"},
    )


class ReproductionListArgs(Schema):
    submission = Int(load_default=None, allow_none=True)


class SubmissionListArgs(Schema):
    round = Int(load_default=None, allow_none=True)
    team = fields.String(load_default=None, allow_none=True)


class SelectIn(Schema):
    selected = fields.Boolean(required=True)


class ReasonIn(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000))


class LeaderboardArgs(Schema):
    board = fields.String(load_default="public", validate=validate.OneOf(["public", "private"]))
    offset = Int(load_default=0, validate=validate.Range(min=0))
    limit = Int(load_default=50, validate=validate.Range(min=1, max=1000))


class LeaderboardRowOut(Schema):
    rank = Int()
    team = fields.String()
    score = fields.Float()
    public_score = fields.Float()
    submission = Int()
    best_at = fields.String()
    submissions = Int()
    last_submission_at = fields.String(allow_none=True)


class LeaderboardOut(Schema):
    competition = fields.String()
    round = Int()
    board = fields.String()
    state = fields.String()
    metric = fields.String()
    higher_is_better = fields.Boolean()
    total = Int()
    version = Int()
    rows = fields.List(fields.Nested(LeaderboardRowOut))


class RescoreOut(Schema):
    queued = Int()


class ResourcesArgs(Schema):
    points = Int(load_default=600, validate=validate.Range(min=10, max=5000))


class ResourceGpuOut(Schema):
    index = Int()
    model = fields.String()
    simulated = fields.Boolean()


class ResourceLineOut(Schema):
    t = fields.List(Int(), metadata={"description": "seconds since it started"})
    value = fields.List(fields.Float())


class ResourcesOut(Schema):
    session = fields.String()
    status = fields.String()
    gpus = fields.List(fields.Nested(ResourceGpuOut))
    simulated_gpus = fields.Boolean()
    samples = Int()
    average_gpu_utilization = fields.Float(allow_none=True)
    gpu_memory_peak_mb = Int(allow_none=True)
    average_cpu_percent = fields.Float(allow_none=True)
    memory_peak_mb = Int(allow_none=True)
    last_sample_at = fields.DateTime(allow_none=True)
    series = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ResourceLineOut),
        metadata={"description": "cpu_percent, memory_mb, gpuN/utilization, gpuN/memory_mb, …"},
    )


class BoundIn(Schema):
    save = fields.Boolean(required=True)


class ResourceSamplesIn(Schema):
    # Checked by `monitoring.record`, sample by sample.
    samples = fields.List(fields.Dict(), required=True, validate=validate.Length(max=5000))


class GpuHolderOut(Schema):
    user = fields.String(allow_none=True)
    session = fields.String(allow_none=True, metadata={"description": "shown to its owner"})
    share = fields.Float(metadata={"description": "the part of the GPU it holds; 1: whole"})


class GpuStatOut(Schema):
    node = fields.String()
    node_status = fields.String()
    index = Int()
    model = fields.String()
    simulated = fields.Boolean()
    memory_total_mb = Int()
    user = fields.String(allow_none=True, metadata={"description": "the first holder's"})
    session = fields.String(allow_none=True)
    holders = fields.List(
        fields.Nested(GpuHolderOut),
        metadata={"description": "every session holding it, or a share of it"},
    )
    utilization_percent = fields.Float(allow_none=True)
    memory_used_mb = Int(allow_none=True)
    temperature_c = fields.Float(allow_none=True)
    power_w = fields.Float(allow_none=True)


class ClusterArgs(Schema):
    span = fields.String(load_default="1d", validate=validate.OneOf(["1h", "1d", "7d", "30d"]))


class ClusterHistoryOut(Schema):
    time = fields.List(fields.String())
    allocated = fields.List(fields.Float())
    busy = fields.List(fields.Float(allow_none=True))
    gpus = fields.List(fields.Float())


class UserAverageOut(Schema):
    user = fields.String()
    average_gpu_utilization = fields.Float()
    sessions = Int()


class NodeStateOut(Schema):
    name = fields.String()
    status = fields.String()
    runtime = fields.String()
    gpus = Int()
    gpus_allocated = Int()
    last_heartbeat_at = fields.DateTime()


class ClusterOut(Schema):
    span = fields.String()
    history = fields.Nested(ClusterHistoryOut)
    users = fields.List(fields.Nested(UserAverageOut))
    nodes = fields.List(fields.Nested(NodeStateOut))
    gpus = Int()
    gpus_allocated = Int()
    simulated_gpus = Int()
    per_user = fields.Boolean()


class NotificationOut(Schema):
    id = Int()
    kind = fields.String()
    subject = fields.String()
    body = fields.String()
    link = fields.String()
    created_at = fields.DateTime()
    read = fields.Boolean()
    email = fields.String(allow_none=True)


class NotificationListArgs(Schema):
    unread = fields.Boolean(load_default=False)
    limit = Int(load_default=50, validate=validate.Range(min=1, max=500))


class NotificationsOut(Schema):
    unread = Int()
    email_alerts = fields.Boolean()
    email_enabled = fields.Boolean(metadata={"description": "whether this site sends e-mail"})
    notifications = fields.List(fields.Nested(NotificationOut))


class ReadIn(Schema):
    ids = fields.List(Int(), load_default=None, allow_none=True)


class EmailAlertsIn(Schema):
    enabled = fields.Boolean(required=True)


class SearchIn(SessionIn):
    """A search: its spec, and what each of its sessions is (the code, resources and
    datasets, as for a session; the script's fixed arguments are the spec's `args`)."""

    class Meta:
        exclude = ("args",)

    spec = fields.Dict(
        required=True,
        metadata={
            "description": "algorithm (grid, random, tpe, asha, pbt), metric, direction, "
            "search (NAME: {choice|uniform|loguniform|int: [...]}), args, parallel, "
            "budget (sessions, gpu_hours, minutes), seed, asha or pbt options"
        },
    )


class SearchTrialOut(Schema):
    number = Int()
    session = fields.String(allow_none=True)
    session_status = fields.String(allow_none=True)
    params = fields.Dict()
    state = fields.String(metadata={"description": "running, done, pruned, failed or stopped"})
    value = fields.Float(allow_none=True)
    step = Int(allow_none=True)
    member = Int(
        metadata={"description": "PBT: the population slot it fills; ASHA: its configuration"}
    )
    parent = Int(
        allow_none=True, metadata={"description": "PBT: the trial whose checkpoint it went on from"}
    )
    checkpoint = fields.String(allow_none=True)
    note = fields.String()
    created_at = fields.String()
    ended_at = fields.String(allow_none=True)


class SearchBestOut(Schema):
    trial = Int()
    value = fields.Float()


class SearchOut(Schema):
    id = fields.String(metadata={"description": "USER/search/N"})
    user = fields.String()
    number = Int()
    algorithm = fields.String()
    metric = fields.String()
    direction = fields.String()
    status = fields.String(metadata={"description": "running, done, stopped or failed"})
    status_reason = fields.String()
    spec = fields.Dict()
    entry = fields.String()
    memo = fields.String()
    best = fields.Nested(SearchBestOut, allow_none=True)
    trial_counts = fields.Dict(keys=fields.String(), values=Int())
    gpu_hours_used = fields.Float()
    created_at = fields.String()
    ended_at = fields.String(allow_none=True)
    trials = fields.List(fields.Nested(SearchTrialOut))


class SearchListOut(SearchOut):
    class Meta:
        exclude = ("trials",)


class SearchListArgs(Schema):
    all = fields.Boolean(load_default=False, metadata={"description": "everyone's (admins)"})


class ServeIn(Schema):
    session = fields.String(required=True, metadata={"description": "USER/N: what to serve"})
    checkpoint = fields.String(
        load_default=None, allow_none=True, metadata={"description": "default: its last"}
    )
    replicas = Int(load_default=1, validate=validate.Range(min=1, max=8))
    gpus = fields.Float(
        load_default=0,
        validate=_gpu_count,
        metadata={"description": "each replica's GPUs, or a share of one (0.25)"},
    )
    name = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(r"^[a-z0-9][a-z0-9-]{0,62}$"),
        metadata={"description": "where it answers: /api/v1/serve/NAME/predict"},
    )
    timeout_s = fields.Float(load_default=30.0, validate=validate.Range(min=1, max=300))


class ServerStatsOut(Schema):
    requests = Int()
    answered = Int()
    errors = Int()
    timeouts = Int()
    refused = Int(metadata={"description": "refused while no replica was ready (503)"})
    latency_ms_p50 = fields.Float(allow_none=True)
    latency_ms_p99 = fields.Float(allow_none=True)
    ready_replicas = Int()


class ServerReplicaOut(Schema):
    id = fields.String()
    status = fields.String()
    ready = fields.Boolean()


class ServerOut(Schema):
    name = fields.String()
    user = fields.String()
    source = fields.String()
    checkpoint = fields.String()
    replicas = Int()
    gpus = fields.Float()
    timeout_s = fields.Float()
    status = fields.String(metadata={"description": "running, stopped or failed"})
    status_reason = fields.String()
    restarts = Int()
    predict = fields.String()
    created_at = fields.String()
    ended_at = fields.String(allow_none=True)
    stats = fields.Nested(ServerStatsOut)
    sessions = fields.List(fields.Nested(ServerReplicaOut))


class ServerListOut(ServerOut):
    class Meta:
        exclude = ("stats", "sessions")


class ServeListArgs(Schema):
    all = fields.Boolean(load_default=False, metadata={"description": "everyone's (admins)"})


class PredictOut(Schema):
    predictions = fields.Raw(metadata={"description": "what the model's infer returned"})


class InferArgs(Schema):
    checkpoint = fields.String(load_default=None, metadata={"description": "default: its last"})


class ServeNextArgs(Schema):
    wait = fields.Float(load_default=10.0, validate=validate.Range(min=0, max=30))


class ServeRequestOut(Schema):
    id = fields.String()
    body = fields.Dict()


class ServeNextOut(Schema):
    requests = fields.List(fields.Nested(ServeRequestOut))
    stop = fields.Boolean(metadata={"description": "its server ended: the replica exits"})


class ServeRepliesIn(Schema):
    replies = fields.List(fields.Dict(), required=True, validate=validate.Length(max=1000))
