"""Invite links in the client: an owner makes one on the trip page and sees it listed; someone
who opens it logs in and lands in the trip; a revoked link lets nobody else in."""

import re
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests_e2e.support import Stack, create_trip, log_in

IVY, JACK, KIM = "ivy@example.com", "jack@example.com", "kim@example.com"


def _create_link(page: Page, role: str, uses: str) -> str:
    """Make an invite link on the open trip page; the address the page shows for it."""
    url = page.locator("#invite-link-url")
    before = url.input_value()
    form = page.locator("#invite-link-form")
    form.get_by_label("Role").select_option(role)
    form.get_by_label("Uses").fill(uses)
    form.get_by_role("button", name="Create link").click()
    expect(url).not_to_have_value(before)
    expect(url).to_have_value(re.compile("#/join/[A-Za-z0-9_-]{43}$"))
    return url.input_value()


def test_join_a_trip_by_link(stack: Stack, new_page: Callable[[], Page]) -> None:
    for address, name in ((IVY, "Ivy"), (JACK, "Jack"), (KIM, "Kim")):
        stack.register(address, name)
    ivy = new_page()
    log_in(ivy, IVY)
    create_trip(ivy, "Kyoto", "Japan", "2027-10-01", "2027-10-05", "Asia/Tokyo")
    ivy.locator("[data-testid=trip]", has_text="Kyoto").get_by_role("link", name="Kyoto").click()
    expect(ivy.locator("#trip-title")).to_have_text("Kyoto")

    # Ivy, the owner, makes a link for one editor: the address is shown once, and listed.
    link = _create_link(ivy, "editor", "1")
    assert link.startswith(f"{stack.app_url}#/join/")
    links = ivy.locator("[data-testid=invite-link]")
    expect(links).to_have_count(1)
    expect(links.first).to_contain_text("editor · 0 of 1 used · by you · active")

    # Jack opens it signed out: he is asked to log in, then lands in the trip as an editor.
    jack = new_page()
    jack.goto(link)
    expect(jack.locator("#auth-view")).to_be_visible()
    expect(jack.locator("#notice")).to_have_text("Log in or create an account to join the trip.")
    log_in(jack, JACK)
    expect(jack.locator("#trip-title")).to_have_text("Kyoto")
    expect(jack.locator("#trip-meta")).to_contain_text("editor")
    expect(jack.locator("#notice")).to_have_text("You are in Kyoto, as editor.")
    assert "#/trips/" in jack.url
    assert "join" not in jack.url
    # An editor may make links too, for at most his own role.
    expect(jack.locator("#invite-links-card")).to_be_visible()
    expect(jack.locator("#invite-link-form option[value=owner]")).to_be_hidden()

    # Ivy's open page follows: the link is used up.
    expect(links.first).to_contain_text("1 of 1 used", timeout=5_000)
    expect(links.first).to_contain_text("used up")

    # A second link, revoked: it lets nobody in.
    revoked = _create_link(ivy, "viewer", "5")
    assert revoked != link
    expect(links).to_have_count(2)
    newest = links.first
    expect(newest).to_contain_text("viewer · 0 of 5 used · by you · active")
    newest.get_by_role("button", name="Revoke").click()
    expect(newest).to_contain_text("revoked")
    expect(newest.get_by_role("button", name="Revoke")).to_have_count(0)
    kim = new_page()
    kim.goto(revoked)
    log_in(kim, KIM)
    expect(kim.locator("#error")).to_contain_text("does not exist or no longer works")
    expect(kim.locator("#app-view")).to_be_visible()
    expect(kim.locator("[data-testid=trip]")).to_have_count(0)
    assert "join" not in kim.url
