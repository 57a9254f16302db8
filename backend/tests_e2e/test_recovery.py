"""A forgotten password in the client: ask for a link on the login screen, open the mailed
link, choose a new password, and log in with it; the old password and every device are out."""

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests_e2e.support import PASSWORD, Stack, log_in

HANNA = "hanna@example.com"
NEW_PASSWORD = "a whole new passphrase"


def _ask_for_a_link(page: Page, address: str) -> str:
    """Ask for a reset link from the login screen; what the page then says."""
    card = page.locator("#forgot-card")
    if not card.evaluate("details => details.open"):
        card.locator("summary").click()
    form = page.locator("#forgot-form")
    form.get_by_label("Email").fill(address)
    form.get_by_role("button", name="Mail me a link").click()
    status = page.locator("#forgot-status")
    expect(status).to_contain_text("If an account has this address")
    return status.inner_text()


def _choose(page: Page, password: str, repeated: str | None = None) -> None:
    form = page.locator("#reset-form")
    form.get_by_label("New password").fill(password)
    form.get_by_label("Repeat it").fill(repeated or password)
    form.get_by_role("button", name="Set the new password").click()


def test_forgot_password_then_reset_by_the_mailed_link_then_log_in(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    stack.register(HANNA, "Hanna")
    phone = stack.sign_in(HANNA, device_label="Hanna's phone")
    page = new_page()
    expect(page.locator("#auth-view")).to_be_visible()

    # The page says the same for an address without an account.
    said = _ask_for_a_link(page, HANNA)
    assert _ask_for_a_link(page, "nobody.here@example.com") == said

    link = stack.mailed_link(HANNA, "Reset your TripSync password")
    assert "#/reset-password/" in link
    page.goto(link)
    expect(page.locator("#reset-view")).to_be_visible()
    expect(page.locator("#auth-view")).to_be_hidden()

    # Two different passwords are caught before anything is sent.
    _choose(page, NEW_PASSWORD, "something else entirely")
    expect(page.locator("#error")).to_have_text("The two passwords differ.")
    _choose(page, NEW_PASSWORD)
    expect(page.locator("#auth-view")).to_be_visible()
    expect(page.locator("#reset-view")).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text("log in with the new one")
    assert "reset-password" not in page.url  # the used token left the address bar

    # Every device was signed out; the old password no longer works, the new one does.
    assert stack.status("GET", "/users/me", token=phone["access_token"]) == 401
    assert "changed" in stack.mail_to(HANNA, "Your TripSync password was changed")
    log_in(page, HANNA, PASSWORD)
    expect(page.locator("#error")).to_have_text("Incorrect email or password.")
    log_in(page, HANNA, NEW_PASSWORD)
    expect(page.locator("#whoami")).to_have_text(f"Hanna <{HANNA}>")

    # The link worked once: opened again, it is refused with the API's message.
    page.goto(link)
    expect(page.locator("#reset-view")).to_be_visible()
    _choose(page, "yet another passphrase")
    expect(page.locator("#error")).to_contain_text("invalid, expired or already used")
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator("#reset-view")).to_be_hidden()
    expect(page.locator("#app-view")).to_be_visible()
