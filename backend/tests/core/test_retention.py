"""`make cleanup` deletes share and invite links LINK_RETENTION_DAYS after they stopped working
(expired or revoked), and keeps the rest: until then their owners see them listed."""

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlmodel import Session, col, select

from app import cli
from app.core.columns import utcnow
from app.core.config import get_settings
from app.invite_links.models import InviteLink
from app.share_links.models import ShareLink
from tests import factories, support


def test_links_that_ended_past_the_retention_are_deleted(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip_id = factories.create_trip(client, owner)["id"]
    retention = timedelta(days=get_settings().LINK_RETENTION_DAYS)
    now = utcnow()

    def create(path: str, body: dict[str, object]) -> str:
        response = client.post(f"/trips/{trip_id}/{path}", headers=support.auth(owner), json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    shares = [create("share-links", {"scope": "itinerary"}) for _ in range(4)]
    invites = [create("invite-links", {"role": "viewer"}) for _ in range(4)]
    for table, (expired_long_ago, revoked_long_ago, ended_lately, _live) in (
        (ShareLink, shares),
        (InviteLink, invites),
    ):
        long_ago = now - retention - timedelta(hours=1)
        lately = now - retention + timedelta(hours=1)
        day = timedelta(days=1)
        for link_id, values in (
            (expired_long_ago, {"created_at": long_ago - day, "expires_at": long_ago}),
            (revoked_long_ago, {"revoked_at": long_ago}),
            (ended_lately, {"created_at": lately - day, "expires_at": lately}),
        ):
            session.execute(update(table).where(col(table.id) == link_id).values(**values))
    session.commit()

    deleted = cli.cleanup(now=now, batch_size=1)

    assert deleted["share links ended past the link retention"] == 2
    assert deleted["invite links ended past the link retention"] == 2
    for table, ids in ((ShareLink, shares), (InviteLink, invites)):
        kept = set(session.exec(select(table.id).where(col(table.trip_id) == trip_id)).all())
        assert {str(link_id) for link_id in kept} == set(ids[2:])
