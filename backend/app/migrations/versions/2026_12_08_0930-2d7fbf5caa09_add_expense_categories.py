"""add expense categories: a fixed list on revisions; other labels move into the notes

Revision ID: 2d7fbf5caa09
Revises: d7a2c4e9f613
Create Date: 2026-12-08 09:30:00.000000+00:00

Until now `category` was free text. A label that names a category of the list (in any case,
around spaces) becomes it; an empty one becomes `other`; any other label becomes `other` too,
and is kept at the front of the revision's notes ("<label>: <notes>", or the label alone when
there were no notes), cut to the notes' 2000 characters, so nothing typed is lost. Expenses
whose current revision changes get a new version of their trip, so synced devices fetch them.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2d7fbf5caa09"
down_revision: str | None = "d7a2c4e9f613"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of app.expenses.models.ExpenseCategory: this migration does not change when
# the app does.
CATEGORIES = (
    "accommodation",
    "transport",
    "food",
    "groceries",
    "activities",
    "shopping",
    "fees",
    "other",
)
NOTES_MAX_LENGTH = 2000
_LIST = ", ".join(f"'{category}'" for category in CATEGORIES)
_LABEL = "btrim(category)"
_KNOWN = f"lower({_LABEL}) IN ({_LIST})"
# Revisions whose category is not already exactly one of the list.
_TO_CHANGE = f"category NOT IN ({_LIST})"

# Every trip with an expense whose current revision changes moves to a new version...
BUMP_TRIPS = f"""
UPDATE trips SET head_version = head_version + 1
WHERE id IN (
    SELECT expense.trip_id
    FROM trip_expenses AS expense
    JOIN trip_expense_revisions AS revision
        ON revision.trip_id = expense.trip_id AND revision.id = expense.current_revision_id
    WHERE revision.{_TO_CHANGE}
)
"""  # noqa: S608 (this module's constants only)
# ... and those expenses take it, so the sync feed sends them again.
BUMP_EXPENSES = f"""
UPDATE trip_expenses AS expense SET version = trip.head_version
FROM trips AS trip, trip_expense_revisions AS revision
WHERE trip.id = expense.trip_id
    AND revision.trip_id = expense.trip_id
    AND revision.id = expense.current_revision_id
    AND revision.{_TO_CHANGE}
"""  # noqa: S608 (this module's constants only)
# One UPDATE: both SET expressions read the label as it was.
MAP_CATEGORIES = f"""
UPDATE trip_expense_revisions SET
    category = CASE WHEN {_KNOWN} THEN lower({_LABEL}) ELSE 'other' END,
    notes = CASE
        WHEN {_KNOWN} OR {_LABEL} = '' THEN notes
        WHEN notes = '' THEN left({_LABEL}, {NOTES_MAX_LENGTH})
        ELSE left({_LABEL} || ': ' || notes, {NOTES_MAX_LENGTH})
    END
WHERE {_TO_CHANGE}
"""  # noqa: S608 (this module's constants only)


def upgrade() -> None:
    op.execute(BUMP_TRIPS)
    op.execute(BUMP_EXPENSES)
    op.execute(MAP_CATEGORIES)
    op.create_check_constraint(
        op.f("ck_trip_expense_revisions_category"),
        "trip_expense_revisions",
        f"category IN ({_LIST})",
    )


def downgrade() -> None:
    # The categories stay as they are (valid free text); labels moved into notes stay there.
    op.drop_constraint(
        op.f("ck_trip_expense_revisions_category"), "trip_expense_revisions", type_="check"
    )
