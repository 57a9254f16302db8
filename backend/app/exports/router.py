"""`GET /trips/{trip_id}/export`: the ledger as CSV, or the whole trip as JSON, as a download.

Both show exactly what the caller sees through the other routes: the CSV is refused (403
`amounts_hidden`) to a viewer of a trip that hides amounts from viewers, as the balances are,
since it is nothing but amounts; the JSON is the member's snapshot (app.feed.service), whose
one rule masks those amounts. docs/api.md ("Exports") lists the CSV's columns.
"""

import uuid
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from app.core.deps import SnapshotSessionDep
from app.core.errors import Forbidden, error_responses
from app.exports.service import ledger_csv
from app.feed import service as feed_service
from app.feed.models import SnapshotPublic
from app.trips.deps import get_trip_member
from app.users.deps import BearerToken

router = APIRouter(tags=["exports"], responses=error_responses(401, 403, 404, 422))


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


_DOWNLOADS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The ledger (csv) or the trip's snapshot (json), as an attachment.",
        "content": {
            "text/csv": {"schema": {"type": "string"}},
            "application/json": {"schema": {"$ref": "#/components/schemas/SnapshotPublic"}},
        },
    }
}


@router.get(
    "/trips/{trip_id}/export",
    response_model=SnapshotPublic,
    response_class=Response,
    responses=_DOWNLOADS,
)
def export_trip(
    request: Request,
    session: SnapshotSessionDep,
    token: BearerToken,
    trip_id: Annotated[uuid.UUID, Path(description="The trip's id")],
    format: Annotated[
        ExportFormat, Query(description="csv: the ledger; json: the trip")
    ] = ExportFormat.CSV,
) -> Response:
    """Download the trip: `csv` streams the ledger (a row per live expense, then per live
    settlement, each participant's paid and owed in the base currency); `json` is the trip as
    the caller sees it, the same document as `GET /trips/{trip_id}/snapshot`.

    One consistent snapshot of the database. A viewer of a trip that hides amounts gets 403
    `amounts_hidden` for `csv`; `json` masks those amounts, as the snapshot does.
    """
    # The access check reads through the export's own session: one connection per download.
    access = get_trip_member(request, session, token, trip_id)
    name = f"tripsync-trip-{access.trip.id}"
    if format is ExportFormat.JSON:
        viewer = feed_service.Viewer(trip=access.trip, user_id=access.user.id, role=access.role)
        return Response(
            feed_service.snapshot(session=session, viewer=viewer),
            media_type="application/json",
            headers=_download_headers(f"{name}.json"),
        )
    if access.trip.hides_amounts_from(access.role):
        raise Forbidden("This trip hides amounts from viewers.", code="amounts_hidden")
    return StreamingResponse(
        ledger_csv(session, access.trip),
        media_type="text/csv; charset=utf-8",
        headers=_download_headers(f"{name}-ledger.csv"),
    )


def _download_headers(filename: str) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="{filename}"',
    }
