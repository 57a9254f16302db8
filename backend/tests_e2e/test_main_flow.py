"""The main flow of the client, by two people in two browsers, against the real API."""

import csv
import io
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests_e2e.support import (
    Stack,
    create_trip,
    log_in,
    register,
    screenshot,
    verify_email,
)

ALICE, BOB = "alice@example.com", "bob@example.com"


def test_plan_a_trip_together(stack: Stack, new_page: Callable[[], Page]) -> None:
    alice, bob = new_page(), new_page()

    # Both register (which signs them in) and confirm their address: Alice pastes the mailed
    # token, Bob opens the link in his mail.
    expect(alice.locator("#auth-view")).to_be_visible()
    screenshot(alice, "login")
    register(alice, "Alice", ALICE)
    verify_email(alice, stack, ALICE)
    register(bob, "Bob", BOB)
    expect(bob.locator("#verify-form")).to_be_visible()
    bob.goto(stack.mailed_link(BOB, "Confirm your email address"))
    expect(bob.locator("#notice")).to_have_text("Your email address is confirmed.")
    expect(bob.locator("#verify-form")).to_be_hidden()
    assert "verify-email" not in bob.url  # the token left the address bar
    bob.locator("#logout").click()
    expect(bob.locator("#auth-view")).to_be_visible()
    log_in(bob, BOB)
    expect(bob.locator("#whoami")).to_have_text(f"Bob <{BOB}>")
    expect(bob.locator("#trips-empty")).to_be_visible()

    # Alice creates a trip; it shows in her list, and she opens it.
    create_trip(alice, "Lisbon", "Portugal", "2027-05-01", "2027-05-04", "Europe/Lisbon")
    trip = alice.locator("[data-testid=trip]", has_text="Lisbon")
    expect(trip).to_contain_text("2027-05-01 → 2027-05-04")
    expect(trip.locator(".trip-role")).to_have_text("owner")
    screenshot(alice, "trips")
    trip.get_by_role("link", name="Lisbon").click()
    expect(alice.locator("#trip-title")).to_have_text("Lisbon")
    expect(alice.locator("#trip-meta")).to_contain_text("EUR")

    # Its four days, each empty so far.
    days = alice.locator("[data-testid=day]")
    expect(days).to_have_count(4)
    expect(days.first).to_contain_text("Day 1 · Sat, May 1")
    expect(days.first).to_contain_text("Nothing planned yet.")

    # Two items, each shown on its day.
    items = alice.locator("#item-form")
    items.get_by_label("Title").fill("Tram 28")
    items.get_by_label("Time").fill("10:00")
    items.get_by_label("Day").select_option("2027-05-01")
    items.get_by_role("button", name="Add item").click()
    day_one = alice.locator("[data-testid=day][data-day='2027-05-01']")
    expect(day_one.locator("[data-testid=item]")).to_have_text(["10:00Tram 28activity"])
    items.get_by_label("Title").fill("Pasteis de Belem")
    items.get_by_label("Kind").select_option("meal")
    items.get_by_label("Day").select_option("2027-05-02")
    items.get_by_role("button", name="Add item").click()
    day_two = alice.locator("[data-testid=day][data-day='2027-05-02']")
    expect(day_two.locator(".item-title")).to_have_text(["Pasteis de Belem"])
    expect(day_one.locator(".item-title")).to_have_text(["Tram 28"])

    # Alice invites Bob; he sees the invitation and accepts it.
    invite = alice.locator("#invite-form")
    invite.get_by_label("Email").fill(BOB)
    invite.get_by_role("button", name="Send invitation").click()
    expect(alice.locator("[data-testid=sent-invitation]")).to_have_text(
        [f"{BOB} · editor · pending"]
    )
    screenshot(alice, "trip")

    # Bob opens the link in the invitation mail.
    bob.goto(stack.mailed_link(BOB, "invites you to Lisbon"))
    invitation = bob.locator("[data-testid=invitation]")
    expect(invitation).to_contain_text("Lisbon")
    expect(invitation).to_contain_text("Alice invited you as editor.")
    screenshot(bob, "invitations")
    invitation.get_by_role("button", name="Accept").click()
    expect(bob.locator("#invitations-card")).to_be_hidden()
    bobs_trip = bob.locator("[data-testid=trip]", has_text="Lisbon")
    expect(bobs_trip.locator(".trip-role")).to_have_text("editor")

    # Alice pays dinner for both: amounts are typed in euros and sent in cents.
    expense = alice.locator("#expense-form")
    expense.get_by_label("Title").fill("Dinner")
    expense.get_by_label("Amount").fill("90.005")
    expense.get_by_role("button", name="Add expense").click()
    expect(alice.locator("#error")).to_have_text(
        "Amount: enter a number with at most 2 decimals for EUR."
    )
    expense.get_by_label("Amount").fill("90")
    expense.get_by_role("button", name="Add expense").click()
    expect(alice.locator("#error")).to_be_hidden()
    expect(alice.locator("#expense-split")).to_have_text(
        "Paid by you, split equally between you, Bob."
    )
    balances = alice.locator("[data-testid=balance]")
    expect(balances).to_have_text(["Alice+€45.00", "Bob-€45.00"])
    expect(alice.locator("[data-testid=transfer]")).to_have_text(["Bob pays Alice €45.00"])
    screenshot(alice, "balances")

    # The ledger downloads as CSV (fetched with the token, saved from a Blob).
    with alice.expect_download() as downloading:
        alice.get_by_role("button", name="Export CSV").click()
    download = downloading.value
    assert download.suggested_filename.endswith("-ledger.csv")
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [(r["kind"], r["title"], r["amount"], r["paid: Alice"]) for r in rows] == [
        ("expense", "Dinner", "90.00", "90.00")
    ]

    # Bob opens the trip: the same plan, the same balances, and no invitation form (not owner).
    bobs_trip.get_by_role("link", name="Lisbon").click()
    expect(bob.locator("#trip-title")).to_have_text("Lisbon")
    expect(bob.locator("[data-testid=day][data-day='2027-05-01'] .item-title")).to_have_text(
        ["Tram 28"]
    )
    expect(bob.locator("[data-testid=balance]")).to_have_text(["Alice+€45.00", "Bob-€45.00"])
    expect(bob.locator("#invite-card")).to_be_hidden()
    bob.locator("#back").click()
    expect(bob.locator("#app-view")).to_be_visible()
