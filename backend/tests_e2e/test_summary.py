"""The trip page's summary (GET /trips/{id}/summary): totals by category, by person and by day,
kept up to date as expenses are added here or elsewhere; viewers of a trip that hides amounts
are told so instead."""

import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import Page, expect

from tests_e2e.support import Stack, log_in

NORA, OMAR, PIA = "nora@example.com", "omar@example.com", "pia@example.com"


def _join(stack: Stack, trip_id: str, owner_token: str, address: str, role: str) -> str:
    """`address` joins the trip with an invite link of `role`; their access token."""
    link = stack.request(
        "POST",
        f"/trips/{trip_id}/invite-links",
        token=owner_token,
        body={"role": role, "max_uses": 1, "expires_in_hours": 24},
    )
    token = stack.log_in(address)
    stack.request("POST", f"/join/{link['token']}", token=token)
    return token


def _add_expense(page: Page, title: str, category: str, amount: str, day: str) -> None:
    form = page.locator("#expense-form")
    form.get_by_label("Title").fill(title)
    form.get_by_label("Category").select_option(category)
    form.get_by_label("Amount").fill(amount)
    form.get_by_label("Date").fill(day)
    form.get_by_role("button", name="Add expense").click()
    expect(page.locator("#expenses .expense-title", has_text=title)).to_be_visible()


def test_the_summary_follows_the_expenses(stack: Stack, new_page: Callable[[], Page]) -> None:
    if "/trips/{trip_id}/summary" not in stack.request("GET", "/openapi.json")["paths"]:
        pytest.skip("the API has no GET /trips/{trip_id}/summary yet")
    for address, name in ((NORA, "Nora"), (OMAR, "Omar"), (PIA, "Pia")):
        stack.register(address, name)
    nora_token = stack.log_in(NORA)
    trip_id = str(uuid.uuid4())
    stack.request(
        "POST",
        "/trips",
        token=nora_token,
        body={
            "id": trip_id,
            "name": "Seville",
            "destination": "Spain",
            "start_date": "2027-06-01",
            "end_date": "2027-06-03",
            "timezone": "Europe/Madrid",
            "base_currency": "EUR",
            "hide_amounts_from_viewers": True,
        },
    )
    omar_token = _join(stack, trip_id, nora_token, OMAR, "editor")

    nora = new_page()
    log_in(nora, NORA)
    expect(nora.locator("#whoami")).to_contain_text(NORA)
    with nora.expect_response(lambda response: "/sync/events?" in response.url):
        nora.goto(f"{stack.app_url}#/trips/{trip_id}")
    expect(nora.locator("#trip-title")).to_have_text("Seville")

    # Nora pays the hotel and the tapas, each split equally with Omar.
    _add_expense(nora, "Hotel", "accommodation", "120", "2027-06-01")
    _add_expense(nora, "Tapas", "food", "30.50", "2027-06-02")
    card = nora.locator("#summary-card")
    expect(card).to_be_visible()
    expect(nora.locator("#summary-total")).to_have_text("€150.50")
    expect(nora.locator("[data-testid=summary-category]")).to_have_text(
        ["accommodation€120.00", "food€30.50"]
    )
    people = nora.locator("[data-testid=summary-person]")
    expect(people.filter(has_text="Nora")).to_have_text("Nora€150.50€75.25")
    expect(people.filter(has_text="Omar")).to_have_text("Omar€0.00€75.25")
    days = nora.locator("[data-testid=summary-day]")
    expect(days.and_(nora.locator("[data-day='2027-06-01']"))).to_have_text("Tue, Jun 1€120.00")
    expect(days.and_(nora.locator("[data-day='2027-06-02']"))).to_have_text("Wed, Jun 2€30.50")

    # Omar adds a taxi from his phone: Nora's open page follows, with no reload.
    participants = stack.request("GET", f"/trips/{trip_id}/participants", token=omar_token)
    ids = {p["name"]: p["id"] for p in participants["items"]}
    stack.request(
        "POST",
        f"/trips/{trip_id}/expenses",
        token=omar_token,
        body={
            "title": "Taxi",
            "category": "transport",
            "amount_minor": 2000,
            "currency": "EUR",
            "spent_on": "2027-06-02",
            "payers": [{"participant_id": ids["Omar"], "amount_minor": 2000}],
            "split_mode": "equal",
            "splits": [{"participant_id": ids["Nora"]}, {"participant_id": ids["Omar"]}],
        },
    )
    expect(nora.locator("#summary-total")).to_have_text("€170.50")
    expect(people.filter(has_text="Omar")).to_have_text("Omar€20.00€85.25")
    expect(days.and_(nora.locator("[data-day='2027-06-02']"))).to_have_text("Wed, Jun 2€50.50")
    expect(nora.locator("[data-testid=summary-category]", has_text="transport")).to_have_text(
        "transport€20.00"
    )
    expect(nora.locator("#error")).to_be_hidden()

    # Pia, a viewer, is told the amounts are hidden, and sees none.
    _join(stack, trip_id, nora_token, PIA, "viewer")
    pia = new_page()
    log_in(pia, PIA)
    expect(pia.locator("#whoami")).to_contain_text(PIA)
    pia.goto(f"{stack.app_url}#/trips/{trip_id}")
    expect(pia.locator("#summary-note")).to_have_text("Amounts are hidden for viewers.")
    expect(pia.locator("#summary-tables")).to_be_hidden()
    expect(pia.locator("[data-testid=summary-person]")).to_have_count(0)
    expect(pia.locator("#error")).to_be_hidden()
