"""Open trip pages follow other people's changes live (GET /sync/events), with no reload."""

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable

from playwright.sync_api import Page, Response, Route, expect

from tests_e2e.support import Stack, log_in, screenshot

LIVE_BOUND_MS = 2000  # issue 12: another person's change shows within 2 s


def _shared_trip(stack: Stack, owner: str, member: str, name: str) -> tuple[str, str]:
    """A trip of `owner` that `member` joined as an editor, set up through the API (these tests
    are about the open pages); returns the trip's id and the owner's access token."""
    for address in (owner, member):
        stack.register(address, address.split(".")[0].title())
    stack.verify_email(member)  # invitations reach only verified addresses
    owner_token, member_token = stack.log_in(owner), stack.log_in(member)
    trip = {
        "id": str(uuid.uuid4()),
        "name": name,
        "destination": "Portugal",
        "start_date": "2027-06-01",
        "end_date": "2027-06-03",
        "timezone": "Europe/Lisbon",
        "base_currency": "EUR",
    }
    stack.request("POST", "/trips", token=owner_token, body=trip)
    invitation = stack.request(
        "POST",
        f"/trips/{trip['id']}/invitations",
        token=owner_token,
        body={"email": member, "role": "editor"},
    )
    stack.request("POST", f"/invitations/{invitation['id']}/accept", token=member_token)
    return trip["id"], owner_token


def _remove_member(stack: Stack, trip_id: str, owner_token: str, address: str) -> None:
    """The owner removes a member from another device (the stub has no members screen)."""
    members = stack.request("GET", f"/trips/{trip_id}/members", token=owner_token)
    member = next(member for member in members["items"] if member["email"] == address)
    stack.request(
        "DELETE",
        f"/trips/{trip_id}/members/{member['user_id']}",
        token=owner_token,
        headers={"If-Match": f'"{member["version"]}"'},
    )


def _open_trip(page: Page, address: str, name: str) -> None:
    """Logs in and opens the trip; returns once its event stream is open and the page loaded."""
    log_in(page, address)
    with page.expect_response(lambda response: "/sync/events?" in response.url) as stream:
        page.locator("[data-testid=trip]", has_text=name).get_by_role("link").click()
    assert stream.value.status == 200
    expect(page.locator("#trip-title")).to_have_text(name)
    expect(page.locator("#spinner")).to_be_hidden()
    # Set in the page's JavaScript realm: still there at the end means it never reloaded.
    page.evaluate("() => { window.notReloaded = true; }")


def _is_item_post(response: Response) -> bool:
    return response.request.method == "POST" and response.url.endswith("/items")


def test_an_open_trip_page_shows_another_members_changes_and_its_removal(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    alice_address, bob_address = "alice.live@example.com", "bob.live@example.com"
    trip_id, alice_token = _shared_trip(stack, alice_address, bob_address, "Porto")
    alice, bob = new_page(), new_page()
    _open_trip(alice, alice_address, "Porto")
    _open_trip(bob, bob_address, "Porto")
    expect(alice.locator("#expense-split")).to_have_text(
        "Paid by you, split equally between you, Bob."
    )

    # Alice adds an item on her page; once it has committed, Bob's page shows it by itself.
    form = alice.locator("#item-form")
    form.get_by_label("Title").fill("Port cellars")
    form.get_by_label("Day").select_option("2027-06-02")
    with alice.expect_response(_is_item_post) as created:
        form.get_by_role("button", name="Add item").click()
    assert created.value.status == 201
    bobs_day = bob.locator("[data-testid=day][data-day='2027-06-02']")
    expect(bobs_day.locator(".item-title", has_text="Port cellars")).to_be_visible(
        timeout=LIVE_BOUND_MS
    )
    expect(bob.locator("#error")).to_be_hidden()

    # Alice removes Bob: his page says so and shows none of the trip any more.
    _remove_member(stack, trip_id, alice_token, bob_address)
    gone = bob.locator("#trip-gone")
    expect(gone).to_be_visible(timeout=LIVE_BOUND_MS)
    expect(gone).to_contain_text("You no longer have access to this trip")
    expect(bob.locator("#trip-body")).to_be_hidden()
    expect(bob.locator("#trip-title")).to_have_text("")
    expect(bob.locator("[data-testid=item]")).to_have_count(0)
    expect(bob.locator("#error")).to_be_hidden()
    screenshot(bob, "trip-gone")

    # Alice's own page follows the change made elsewhere too: Bob no longer shares expenses.
    expect(alice.locator("#expense-split")).to_have_text(
        "Paid by you, split equally between you.", timeout=LIVE_BOUND_MS
    )
    for page in (alice, bob):
        assert page.evaluate("() => window.notReloaded") is True


def _first_event(stack: Stack, address: str) -> tuple[str, str]:
    """The id and data of the first event of a new stream of `address` (another device)."""
    request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
        f"{stack.base_url}/sync/events",
        headers={"Authorization": f"Bearer {stack.log_in(address)}"},
    )
    fields: dict[str, str] = {}
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        for raw in response:
            line = raw.decode().rstrip("\r\n")
            if not line and "id" in fields:
                return fields["id"], fields["data"]
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    raise AssertionError("the stream ended before its first event")


def test_a_page_that_lost_its_stream_resumes_where_it_left_off(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    carol_address, dave_address = "carol.live@example.com", "dave.live@example.com"
    trip_id, carol_token = _shared_trip(stack, carol_address, dave_address, "Braga")
    event_id, event_data = _first_event(stack, dave_address)
    assert json.loads(event_data)["trip_id"] == trip_id

    # Dave's first stream tells the trip's version and ends (a server restart, say); the next
    # answers 401 (an expired stream token); the third is held until Carol has removed him.
    urls: list[str] = []
    held: list[Route] = []

    def streams(route: Route) -> None:
        urls.append(route.request.url)
        if len(urls) == 1:
            body = f"event: version\nid: {event_id}\ndata: {event_data}\n\n"
            route.fulfill(status=200, content_type="text/event-stream", body=body)
        elif len(urls) == 2:
            problem = {"status": 401, "code": "invalid_stream_token"}
            route.fulfill(status=401, content_type="application/problem+json", json=problem)
        else:
            held.append(route)

    dave = new_page()
    dave.route(lambda url: "/sync/events?" in url, streams)
    _open_trip(dave, dave_address, "Braga")
    for _ in range(250):  # the route handler runs as Playwright's events are processed
        if held:
            break
        dave.wait_for_timeout(20)
    assert len(held) == 1

    # Removed while his page had no stream: only a stream that resumes can tell him.
    _remove_member(stack, trip_id, carol_token, dave_address)
    held[0].continue_()
    expect(dave.locator("#trip-gone")).to_be_visible(timeout=LIVE_BOUND_MS)
    assert dave.evaluate("() => window.notReloaded") is True

    # Each attempt asked for a fresh stream token; each reconnection resumed from the last id.
    queries = [urllib.parse.parse_qs(urllib.parse.urlsplit(url).query) for url in urls]
    assert len({query["token"][0] for query in queries}) == 3
    assert [query.get("last_event_id") for query in queries] == [None, [event_id], [event_id]]
