"""Join the three branches written in parallel (matcher, takedown, access) into one
history, so the next migration has a single parent.

Revision ID: 0003_merge
Revises: 0002_access, 0002_matcher, 0002_takedown
Create Date: 2026-12-04
"""

from collections.abc import Sequence

revision: str = "0003_merge"
down_revision: tuple[str, ...] = ("0002_access", "0002_matcher", "0002_takedown")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the branches touch different tables."""


def downgrade() -> None:
    """Nothing to change."""
