"""The calendar feed in the client: a member asks for the subscribe link on the trip page, the
address it shows serves the trip's iCalendar document, and stopping it ends the address."""

import urllib.error
import urllib.request
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests_e2e.support import Stack, create_trip, log_in

LENA = "lena@example.com"


def _fetch(address: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310 (127.0.0.1)
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_subscribe_to_a_trip_in_a_calendar(stack: Stack, new_page: Callable[[], Page]) -> None:
    stack.register(LENA, "Lena")
    page = new_page()
    log_in(page, LENA)
    create_trip(page, "Paris", "France", "2027-10-28", "2027-11-02", "Europe/Paris")
    page.locator("[data-testid=trip]", has_text="Paris").get_by_role("link", name="Paris").click()
    expect(page.locator("#trip-title")).to_have_text("Paris")

    page.get_by_role("button", name="Subscribe in your calendar").click()
    url = page.locator("#calendar-url")
    expect(page.locator("#calendar-feed")).to_be_visible()
    address = url.input_value()
    assert address.startswith(f"{stack.base_url}/trips/")
    assert "/calendar.ics?token=" in address
    webcal = page.locator("#calendar-webcal").get_attribute("href")
    assert webcal == address.replace("http:", "webcal:", 1)
    status, content_type, body = _fetch(address)
    assert (status, content_type) == (200, "text/calendar; charset=utf-8")
    assert body.startswith(b"BEGIN:VCALENDAR\r\n")
    assert b"X-WR-CALNAME:Paris\r\n" in body

    # Asked again, the page reuses the token it was given (the API shows it only once).
    page.get_by_role("button", name="Subscribe in your calendar").click()
    expect(url).to_have_value(address)

    page.get_by_role("button", name="Stop this address").click()
    expect(page.locator("#calendar-feed")).to_be_hidden()
    assert _fetch(address)[0] == 404
