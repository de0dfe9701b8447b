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
    TeamInvitation,
    TeamMember,
    Visibility,
)
from portal.models.node import Gpu, Node, NodeJoinToken, NodeStatus
from portal.models.session import (
    ACTIVE_STATUSES,
    Allocation,
    Checkpoint,
    LogLine,
    ScalarChunk,
    ScalarSeries,
    Session,
    SessionKind,
    SessionStatus,
)
from portal.models.user import ApiToken, Level, SignupInvitation, User

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
    "Level",
    "LogLine",
    "Node",
    "NodeJoinToken",
    "NodeStatus",
    "Round",
    "ScalarChunk",
    "ScalarSeries",
    "Session",
    "SessionDataset",
    "SessionKind",
    "SessionStatus",
    "SignupInvitation",
    "Submission",
    "SubmissionStatus",
    "Team",
    "TeamInvitation",
    "TeamInvite",
    "TeamMember",
    "User",
    "Visibility",
]
