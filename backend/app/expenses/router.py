"""Routes for a trip's shared expenses, settlements, balances and spending summary.

Amounts are integers in minor units (cents; yen; fils) of the stated currency, and base
amounts are in the trip's base currency. Exchange rates and percentages are exact decimals:
send them as JSON numbers or strings, they are never rounded through binary floats.

When the trip sets `hide_amounts_from_viewers`, a viewer still sees every expense and
settlement (who paid, who shares, the weights and the currency) but all amounts are `null`,
and the balances and summary routes answer 403 `amounts_hidden`: they are nothing but
amounts.

Changes and deletions need If-Match (the expense's or settlement's ETag, its `version`). The
older `expected_revision` (body of PATCH, query of DELETE) is still honoured (409
`revision_conflict`) but deprecated: If-Match says the same, for every resource.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.core.deps import IfMatch, SessionDep
from app.core.errors import Forbidden, error_responses
from app.core.pagination import Page, PageParams
from app.core.preconditions import (
    conditional_write_responses,
    create_responses,
    etag_responses,
    set_etag,
)
from app.expenses import service
from app.expenses.models import (
    BalancesPublic,
    ExpenseCreate,
    ExpensePublic,
    ExpenseRecord,
    ExpenseRevisionPublic,
    ExpenseUpdate,
    SettlementCreate,
    SettlementPublic,
    TripSummary,
)
from app.trips.deps import TripAccess, TripEditor, TripMember

router = APIRouter(
    prefix="/trips/{trip_id}", tags=["expenses"], responses=error_responses(401, 404, 422)
)
_writes = error_responses(403, 409)


def _amounts_hidden(access: TripAccess) -> bool:
    return access.trip.hides_amounts_from(access.role)


def _ensure_amounts_visible(access: TripAccess) -> None:
    """Routes that are nothing but amounts refuse (not mask) a reader they are hidden from."""
    if _amounts_hidden(access):
        raise Forbidden("This trip hides amounts from viewers.", code="amounts_hidden")


def _public(record: ExpenseRecord, access: TripAccess) -> ExpensePublic:
    return ExpensePublic.of(
        record, base_currency=access.trip.base_currency, hidden=_amounts_hidden(access)
    )


@router.post(
    "/expenses",
    status_code=status.HTTP_201_CREATED,
    response_model=ExpensePublic,
    responses={**_writes, **create_responses(ExpensePublic)},
)
def create_expense(
    session: SessionDep, access: TripEditor, data: ExpenseCreate, response: Response
) -> ExpensePublic:
    """Record an expense; the server computes every share, in its currency and the base one."""
    created = service.create_expense(
        session=session, trip_id=access.trip.id, data=data, actor_id=access.user.id
    )
    if created.replayed:
        response.status_code = status.HTTP_200_OK
    set_etag(response, created.value.expense.version)
    return _public(created.value, access)


@router.get("/expenses", response_model=Page[ExpensePublic], responses=error_responses(400))
def list_expenses(session: SessionDep, access: TripMember, page: PageParams) -> Page[ExpensePublic]:
    """Expenses that are not deleted, latest date first."""
    records, last = service.list_expenses(session=session, trip_id=access.trip.id, page=page)
    return Page(items=[_public(r, access) for r in records], next_cursor=page.cursor_for(last))


@router.get("/expenses/{expense_id}", response_model=ExpensePublic, responses=etag_responses())
def get_expense(
    session: SessionDep, access: TripMember, expense_id: uuid.UUID, response: Response
) -> ExpensePublic:
    record = service.get_expense(session=session, trip_id=access.trip.id, expense_id=expense_id)
    set_etag(response, record.expense.version)
    return _public(record, access)


@router.patch(
    "/expenses/{expense_id}",
    response_model=ExpensePublic,
    responses={**_writes, **conditional_write_responses()},
)
def update_expense(
    session: SessionDep,
    access: TripEditor,
    expense_id: uuid.UUID,
    expected: IfMatch,
    data: ExpenseUpdate,
    response: Response,
) -> ExpensePublic:
    """Change an expense: a new revision; the earlier ones stay readable."""
    record = service.update_expense(
        session=session,
        trip_id=access.trip.id,
        expense_id=expense_id,
        data=data,
        actor_id=access.user.id,
        expected=expected,
    )
    set_etag(response, record.expense.version)
    return _public(record, access)


@router.delete(
    "/expenses/{expense_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_writes, **conditional_write_responses(None)},
)
def delete_expense(
    session: SessionDep,
    access: TripEditor,
    expense_id: uuid.UUID,
    expected: IfMatch,
    expected_revision: Annotated[
        int | None,
        Query(ge=1, deprecated=True, description="Deprecated: send If-Match instead."),
    ] = None,
) -> None:
    """Remove an expense from lists and balances; its revisions stay readable."""
    service.delete_expense(
        session=session,
        trip_id=access.trip.id,
        expense_id=expense_id,
        actor_id=access.user.id,
        expected=expected,
        expected_revision=expected_revision,
    )


@router.get(
    "/expenses/{expense_id}/revisions",
    response_model=Page[ExpenseRevisionPublic],
    responses=error_responses(400),
)
def list_expense_revisions(
    session: SessionDep, access: TripMember, expense_id: uuid.UUID, page: PageParams
) -> Page[ExpenseRevisionPublic]:
    """Every version of the expense, oldest first, including the one recording its deletion."""
    records, last = service.list_revisions(
        session=session, trip_id=access.trip.id, expense_id=expense_id, page=page
    )
    hidden = _amounts_hidden(access)
    return Page(
        items=[
            ExpenseRevisionPublic.of(r, base_currency=access.trip.base_currency, hidden=hidden)
            for r in records
        ],
        next_cursor=page.cursor_for(last),
    )


@router.post(
    "/settlements",
    status_code=status.HTTP_201_CREATED,
    response_model=SettlementPublic,
    responses={**_writes, **create_responses(SettlementPublic)},
)
def create_settlement(
    session: SessionDep, access: TripEditor, data: SettlementCreate, response: Response
) -> SettlementPublic:
    """Record a payment from one participant to another."""
    created = service.create_settlement(
        session=session, trip_id=access.trip.id, data=data, actor_id=access.user.id
    )
    if created.replayed:
        response.status_code = status.HTTP_200_OK
    set_etag(response, created.value.version)
    return SettlementPublic.of(
        created.value, base_currency=access.trip.base_currency, hidden=_amounts_hidden(access)
    )


@router.get("/settlements", response_model=Page[SettlementPublic], responses=error_responses(400))
def list_settlements(
    session: SessionDep, access: TripMember, page: PageParams
) -> Page[SettlementPublic]:
    settlements, last = service.list_settlements(session=session, trip_id=access.trip.id, page=page)
    hidden = _amounts_hidden(access)
    return Page(
        items=[
            SettlementPublic.of(s, base_currency=access.trip.base_currency, hidden=hidden)
            for s in settlements
        ],
        next_cursor=page.cursor_for(last),
    )


@router.delete(
    "/settlements/{settlement_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**_writes, **conditional_write_responses(None)},
)
def delete_settlement(
    session: SessionDep, access: TripEditor, settlement_id: uuid.UUID, expected: IfMatch
) -> None:
    service.delete_settlement(
        session=session,
        trip_id=access.trip.id,
        settlement_id=settlement_id,
        actor_id=access.user.id,
        expected=expected,
    )


@router.get("/balances", response_model=BalancesPublic, responses=error_responses(403))
def get_balances(session: SessionDep, access: TripMember) -> BalancesPublic:
    """Each participant's balance in the base currency (they sum to zero) and a settle-up plan
    of at most n - 1 transfers.

    A viewer of a trip that hides amounts from viewers gets 403 `amounts_hidden`.
    """
    _ensure_amounts_visible(access)
    return service.compute_balances(session=session, trip_id=access.trip.id)


@router.get("/summary", response_model=TripSummary, responses=error_responses(403))
def get_summary(session: SessionDep, access: TripMember) -> TripSummary:
    """What the trip spent, in the base currency (minor units), from its live expenses:
    the total, per category (in the category list's order, those with expenses), per
    participant (paid, and consumed: their shares; every participant, in the balances'
    order) and per day (ascending).

    Settlements are transfers between participants, not spending: they are not counted.
    A viewer of a trip that hides amounts from viewers gets 403 `amounts_hidden`.
    """
    _ensure_amounts_visible(access)
    return service.compute_summary(session=session, trip_id=access.trip.id)
