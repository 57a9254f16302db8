"""What the user sees when the API says no, and while it is still thinking."""

from collections.abc import Callable

from playwright.sync_api import Page, Route, expect

from tests_e2e.support import Stack, create_trip, log_in


def test_a_wrong_password_shows_the_api_message(stack: Stack, new_page: Callable[[], Page]) -> None:
    stack.register("carol@example.com", "Carol")
    page = new_page()
    log_in(page, "carol@example.com", "not her password")
    expect(page.locator("#error")).to_have_text("Incorrect email or password.")
    expect(page.locator("#auth-view")).to_be_visible()
    expect(page.locator("#session")).to_be_hidden()


def test_registering_a_taken_address_says_to_log_in(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    stack.register("frank@example.com", "Frank")
    page = new_page()
    form = page.locator("#register-form")
    form.get_by_label("Full name").fill("Not Frank")
    form.get_by_label("Email").fill("frank@example.com")
    form.get_by_label("Password").fill("someone else's password")
    form.get_by_role("button", name="Register").click()
    expect(page.locator("#error")).to_contain_text(
        "If the address already had an account, log in with its password."
    )
    expect(page.locator("#session")).to_be_hidden()
    # Frank, not the caller, hears of it.
    assert "already has one" in stack.mail_to("frank@example.com", "Someone tried to register")


def test_a_validation_error_shows_the_message_and_the_field(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    stack.register("dave@example.com", "Dave")
    page = new_page()
    log_in(page, "dave@example.com")
    create_trip(page, "Nowhere", "Mars", "2027-05-01", "2027-05-04", "Mars/Olympus_Mons")
    error = page.locator("#error")
    expect(error.locator("p")).to_have_text("The request is invalid: 1 field error(s).")
    expect(error.locator("li")).to_have_text(
        ["timezone: Value error, must be an IANA time zone such as 'Europe/Paris' or 'UTC'"]
    )
    expect(page.locator("[data-testid=trip]")).to_have_count(0)


def test_the_spinner_shows_while_a_request_runs(stack: Stack, new_page: Callable[[], Page]) -> None:
    stack.register("erin@example.com", "Erin")
    page = new_page()
    held: list[Route] = []
    # Hold the trip list request (sent right after the login) until the test releases it.
    page.route(lambda url: "/trips?" in url, lambda route: held.append(route))
    with page.expect_request(lambda request: "/trips?" in request.url):
        log_in(page, "erin@example.com")
    for _ in range(250):  # the route handler runs as Playwright's events are processed
        if held:
            break
        page.wait_for_timeout(20)
    assert len(held) == 1
    spinner = page.locator("#spinner")
    expect(spinner).to_be_visible()
    expect(spinner).to_have_text("Loading…")
    expect(page.locator("#main")).to_have_attribute("aria-busy", "true")
    expect(page.locator("#login-form button[type=submit]")).to_be_disabled()
    expect(page.locator("#trips-empty")).to_be_hidden()
    held[0].continue_()
    expect(spinner).to_be_hidden()
    expect(page.locator("#main")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#trips-empty")).to_be_visible()
