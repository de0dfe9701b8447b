"""The database schema: one module per noun. The portal owns these tables."""

from portal.models.competition import (
    COUNTED_STATUSES,
    Competition,
    CompetitionMember,
    CompetitionTeam,
    Round,
    Submission,
    SubmissionStatus,
    TeamInvite,
)
from portal.models.dataset import (
    Dataset,
    DatasetVersion,
    SessionDataset,
    Team,
    TeamMember,
    Visibility,
)
from portal.models.node import Gpu, Node, NodeStatus
from portal.models.session import (
    ACTIVE_STATUSES,
    Allocation,
    Checkpoint,
    LogLine,
    Scalar,
    Session,
    SessionKind,
    SessionStatus,
)
from portal.models.user import ApiToken, User

__all__ = [
    "ACTIVE_STATUSES",
    "COUNTED_STATUSES",
    "Allocation",
    "ApiToken",
    "Checkpoint",
    "Competition",
    "CompetitionMember",
    "CompetitionTeam",
    "Dataset",
    "DatasetVersion",
    "Gpu",
    "LogLine",
    "Node",
    "NodeStatus",
    "Round",
    "Scalar",
    "Session",
    "SessionDataset",
    "SessionKind",
    "SessionStatus",
    "Submission",
    "SubmissionStatus",
    "Team",
    "TeamInvite",
    "TeamMember",
    "User",
    "Visibility",
]
