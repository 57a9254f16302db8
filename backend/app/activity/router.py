"""Route for reading a trip's activity log."""

from fastapi import APIRouter

from app.activity import service
from app.activity.models import ActivityPublic
from app.core.deps import SessionDep
from app.core.errors import error_responses
from app.core.pagination import Page, PageParams
from app.trips.deps import TripMember

router = APIRouter(prefix="/trips", tags=["activity"], responses=error_responses(401, 404, 422))


@router.get(
    "/{trip_id}/activity", response_model=Page[ActivityPublic], responses=error_responses(400)
)
def list_trip_activity(
    session: SessionDep, access: TripMember, page: PageParams
) -> Page[ActivityPublic]:
    entries, last = service.list_activity(
        session=session, trip_id=access.trip.id, user_id=access.user.id, page=page
    )
    return Page(items=entries, next_cursor=page.cursor_for(last))
