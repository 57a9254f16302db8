"""The public page of a share link (#/shared/<token>): an owner makes links on the trip page;
anyone who opens one, signed in or not, sees the trip read-only and nothing of the signed-in
client; a link that hides amounts shows none; a revoked link says it no longer works."""

import re
import uuid
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, Request, expect

from tests_e2e.support import Stack, log_in, screenshot

MIA = "mia@example.com"
HIDDEN_AMOUNT_MINOR = 421789  # €4,217.89: none of these digits may show when amounts are hidden


def _trip_with_plan_and_expense(stack: Stack) -> str:
    """Mia's trip to Porto, with two items and an expense, set up through the API."""
    stack.register(MIA, "Mia")
    token = stack.log_in(MIA)
    trip_id = str(uuid.uuid4())
    stack.request(
        "POST",
        "/trips",
        token=token,
        body={
            "id": trip_id,
            "name": "Porto",
            "destination": "Portugal",
            "start_date": "2027-06-01",
            "end_date": "2027-06-03",
            "timezone": "Europe/Lisbon",
            "base_currency": "EUR",
        },
    )
    items: list[dict[str, Any]] = [
        {
            "kind": "activity",
            "title": "Port cellar tour",
            "day": "2027-06-01",
            "start_local": "2027-06-01T09:30:00",
            "place": {"name": "Caves Taylor's", "address": "Rua do Choupelo 250"},
        },
        {
            "kind": "transport",
            "title": "Flight home",
            "day": "2027-06-03",
            "start_local": "2027-06-03T18:45:00",
            "start_timezone": "Europe/London",
        },
    ]
    for item in items:
        stack.request("POST", f"/trips/{trip_id}/items", token=token, body=item)
    participants = stack.request("GET", f"/trips/{trip_id}/participants", token=token)["items"]
    mia = participants[0]["id"]
    stack.request(
        "POST",
        f"/trips/{trip_id}/expenses",
        token=token,
        body={
            "title": "Francesinha dinner",
            "category": "food",
            "amount_minor": HIDDEN_AMOUNT_MINOR,
            "currency": "EUR",
            "spent_on": "2027-06-02",
            "payers": [{"participant_id": mia, "amount_minor": HIDDEN_AMOUNT_MINOR}],
            "split_mode": "equal",
            "splits": [{"participant_id": mia}],
        },
    )
    return trip_id


def _create_share_link(page: Page, scope: str, hide_amounts: bool) -> str:
    """Make a share link on the open trip page; the address the page shows for it."""
    url = page.locator("#share-link-url")
    before = url.input_value()
    form = page.locator("#share-link-form")
    form.get_by_label("Shows").select_option(scope)
    form.get_by_label("Hide amounts").set_checked(hide_amounts)
    form.get_by_role("button", name="Create link").click()
    expect(url).not_to_have_value(before)
    expect(url).to_have_value(re.compile("#/shared/[A-Za-z0-9_-]{43}$"))
    return url.input_value()


class _ApiRequests:
    """Every request a page sends to the API, with whether it carried an access token."""

    def __init__(self, page: Page, stack: Stack) -> None:
        self.sent: list[tuple[str, bool]] = []
        self._prefix = stack.base_url
        page.on("request", self._record)

    def _record(self, request: Request) -> None:
        path = request.url.removeprefix(self._prefix)
        if request.resource_type in ("fetch", "xhr", "eventsource") and path != request.url:
            self.sent.append((path.split("?")[0], "authorization" in request.headers))


def _expect_only_the_shared_trip(page: Page) -> None:
    """Nothing of the signed-in client shows: no session bar, no login, no trip list."""
    expect(page.locator("#shared-view")).to_be_visible()
    for view in ("#session", "#auth-view", "#app-view", "#trip-view", "#logout", "#trips"):
        expect(page.locator(view)).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()


def test_a_share_link_shows_the_trip_read_only_to_anyone(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    trip_id = _trip_with_plan_and_expense(stack)
    mia = new_page()
    log_in(mia, MIA)
    expect(mia.locator("#whoami")).to_contain_text(MIA)
    mia.goto(f"{stack.app_url}#/trips/{trip_id}")
    expect(mia.locator("#trip-title")).to_have_text("Porto")

    # The address shown is this client's page for the link, not the API's JSON.
    itinerary_link = _create_share_link(mia, "itinerary", hide_amounts=False)
    assert itinerary_link.startswith(f"{stack.app_url}#/shared/")
    expenses_link = _create_share_link(mia, "itinerary_and_expenses", hide_amounts=True)

    # Someone without an account opens the itinerary link: the plan, by day, read-only.
    visitor = new_page()
    requests = _ApiRequests(visitor, stack)
    visitor.goto(itinerary_link)
    expect(visitor.locator("#shared-title")).to_have_text("Porto")
    expect(visitor.locator("#shared-meta")).to_have_text(
        "Portugal · 2027-06-01 → 2027-06-03 · read-only"
    )
    days = visitor.locator("#shared-days [data-testid=day]")
    expect(days).to_have_count(3)
    expect(days.nth(0).locator("h4")).to_have_text("Day 1 · Tue, Jun 1")
    first = days.nth(0).locator("[data-testid=item]")
    expect(first.locator(".item-title")).to_have_text(["Port cellar tour"])
    expect(first.locator(".item-time")).to_have_text(["09:30"])  # the item's own zone
    expect(first.locator(".item-place")).to_have_text(["Caves Taylor's, Rua do Choupelo 250"])
    expect(days.nth(1)).to_contain_text("Nothing planned yet.")
    expect(days.nth(2).locator(".item-time")).to_have_text(["18:45 Europe/London"])
    expect(visitor.locator("#shared-expenses-card")).to_be_hidden()  # not in this scope
    _expect_only_the_shared_trip(visitor)
    screenshot(visitor, "shared-trip")
    # It asked the API for the shared trip alone, without a token, and kept nothing.
    assert requests.sent
    assert {path for path, _ in requests.sent} == {f"/shared/{itinerary_link.split('/')[-1]}"}
    assert not any(authorized for _, authorized in requests.sent)
    assert visitor.evaluate("() => sessionStorage.length") == 0

    # The expenses link that hides amounts: the expense, with no amount at all.
    visitor.goto(expenses_link)
    expenses = visitor.locator("#shared-expenses [data-testid=expense]")
    expect(expenses).to_have_count(1)
    expect(expenses.locator(".expense-title")).to_have_text(["Francesinha dinner"])
    expect(expenses.locator(".expense-category")).to_have_text(["food"])
    expect(expenses.locator(".expense-amount")).to_have_text(["amount hidden"])
    expect(visitor.locator("#shared-amounts-note")).to_be_visible()
    expect(visitor.locator("#shared-days .item-title")).to_have_text(
        ["Port cellar tour", "Flight home"]
    )
    shown = visitor.locator("#shared-view").inner_text()
    assert "Francesinha dinner" in shown
    assert "€" not in shown
    for digits in ("4217", "4,217", "4.217", "217", "89"):
        assert digits not in shown
    assert visitor.evaluate("() => sessionStorage.length") == 0

    # Mia, signed in, opens a link too: the same public page, read without her token, and
    # none of her signed-in screens; back in her trips, they are all there again.
    mias_requests = _ApiRequests(mia, stack)
    mia.goto(itinerary_link)
    expect(mia.locator("#shared-days .item-title")).to_have_text(
        ["Port cellar tour", "Flight home"]
    )
    _expect_only_the_shared_trip(mia)
    assert [authorized for path, authorized in mias_requests.sent if "/shared/" in path] == [False]
    mia.goto(f"{stack.app_url}#/")
    expect(mia.locator("#shared-view")).to_be_hidden()
    expect(mia.locator("#session")).to_be_visible()
    expect(mia.locator("[data-testid=trip]", has_text="Porto")).to_be_visible()

    # Mia revokes the expenses link: it no longer works, and the page says so plainly.
    mia.goto(f"{stack.app_url}#/trips/{trip_id}")
    link = mia.locator("[data-testid=share-link]", has_text="amounts hidden")
    link.get_by_role("button", name="Revoke").click()
    expect(link).to_contain_text("revoked")
    visitor.reload()
    expect(visitor.locator("#shared-gone")).to_be_visible()
    expect(visitor.locator("#shared-gone")).to_contain_text("This link is no longer valid")
    expect(visitor.locator("#shared-body")).to_be_hidden()
    expect(visitor.locator("#shared-title")).to_have_text("")
    _expect_only_the_shared_trip(visitor)
    # A token never issued reads the same.
    visitor.goto(f"{stack.app_url}#/")
    expect(visitor.locator("#auth-view")).to_be_visible()
    visitor.goto(f"{stack.app_url}#/shared/{'A' * 43}")
    expect(visitor.locator("#shared-gone")).to_be_visible()
    _expect_only_the_shared_trip(visitor)
