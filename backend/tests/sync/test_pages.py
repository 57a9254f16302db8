"""Where a page of changes ends: never inside a version, and `has_more` says what remains."""

from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session

from tests import factories, support


def test_a_page_full_inside_a_version_ends_with_it_and_more_remain(
    client: TestClient, session: Session
) -> None:
    owner = factories.make_user(session)
    trip = factories.create_trip(client, owner)
    for n in range(3):
        factories.add_item(client, owner, trip["id"], title=f"Item {n}", day="2027-05-03")
    url, headers = f"/trips/{trip['id']}/changes", support.auth(owner)
    since = client.get(url, headers=headers, params={"since": 0}).json()["version"]
    # One version: the trip and its three items. Then one item more, in the next version.
    client.patch(
        f"/trips/{trip['id']}",
        headers=support.auth(owner, if_match="*"),
        json={"end_date": "2027-05-02"},
    )
    later = factories.add_item(client, owner, trip["id"], title="Later")

    def page(since: int, limit: int) -> Any:
        response = client.get(url, headers=headers, params={"since": since, "limit": limit})
        assert response.status_code == 200, response.text
        return response.json()

    for limit in (1, 2, 3, 4):
        first = page(since, limit)
        assert len(first["changes"]) == 4, limit  # the whole version, whatever the limit
        assert first["has_more"] is True
        assert {c["version"] for c in first["changes"]} == {first["version"]}
        rest = page(first["version"], limit)
        assert [c["id"] for c in rest["changes"]] == [later["id"]]
        assert rest["has_more"] is False
    whole = page(since, 5)
    assert (len(whole["changes"]), whole["has_more"]) == (5, False)
