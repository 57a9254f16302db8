"""Two-factor sign-in in the client: turn it on with a code an authenticator app would show
(computed here with pyotp), log out, log in with the second step, and turn it off with a
recovery code."""

import time
from collections.abc import Callable

import pyotp
from playwright.sync_api import Page, expect

from tests_e2e.support import PASSWORD, Stack, log_in

HEDY = "hedy@example.com"


def _tokens(page: Page) -> str | None:
    token: str | None = page.evaluate("() => sessionStorage.getItem('tripsync.token')")
    return token


def test_turn_on_log_in_with_a_code_and_turn_off(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    stack.register(HEDY, "Hedy")
    page = new_page()
    log_in(page, HEDY)
    expect(page.locator("#whoami")).to_have_text(f"Hedy <{HEDY}>")

    # Settings: off, then set up with the password; the key and its otpauth:// link show.
    card = page.locator("#two-factor-card")
    card.locator("summary").click()
    expect(page.locator("#two-factor-status")).to_contain_text("Off")
    start = page.locator("#two-factor-start")
    start.get_by_label("Password").fill(PASSWORD)
    start.get_by_role("button", name="Set up").click()
    secret_text = page.locator("#two-factor-secret")
    expect(secret_text).not_to_be_empty()
    secret = secret_text.inner_text().strip()
    link = page.locator("#two-factor-uri").inner_text().strip()
    totp = pyotp.parse_uri(link)
    assert isinstance(totp, pyotp.TOTP)
    assert totp.secret == secret
    assert totp.name == HEDY

    # The app's code turns it on; the recovery codes show once.
    step = totp.timecode(time.time())
    confirm = page.locator("#two-factor-confirm")
    confirm.get_by_label("Code from the app").fill(totp.generate_otp(step))
    confirm.get_by_role("button", name="Turn on").click()
    codes = page.locator("#recovery-codes li")
    expect(codes).to_have_count(10)
    recovery_codes = codes.all_inner_texts()
    page.locator("#two-factor-codes-done").click()
    expect(codes).to_have_count(0)
    expect(page.locator("#two-factor-status")).to_contain_text("10 recovery codes left")
    assert "Two-factor sign-in is now on" in stack.mail_to(HEDY, "Two-factor sign-in is on")

    # Log out; the password alone no longer signs in: the page asks for the code.
    page.locator("#logout").click()
    log_in(page, HEDY)
    mfa = page.locator("#mfa-form")
    expect(mfa).to_be_visible()
    expect(page.locator("#login-form")).to_be_hidden()
    assert _tokens(page) is None

    # A wrong code is refused and can be typed again; the next code of the app signs in (the
    # one that turned it on was used: each code works once).
    valid = {totp.generate_otp(s) for s in range(step - 1, step + 4)}
    wrong = next(f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in valid)
    mfa.get_by_label("Code").fill(wrong)
    mfa.get_by_role("button", name="Verify").click()
    expect(page.locator("#error")).to_contain_text("The code is wrong")
    expect(mfa).to_be_visible()
    mfa.get_by_label("Code").fill(totp.generate_otp(max(step, totp.timecode(time.time())) + 1))
    mfa.get_by_role("button", name="Verify").click()
    expect(page.locator("#whoami")).to_have_text(f"Hedy <{HEDY}>")
    expect(mfa).to_be_hidden()
    token = _tokens(page)
    assert token is not None
    assert stack.status("GET", "/users/me", token=token) == 200

    # Turned off with the password and a recovery code (the phone is lost, say).
    card.locator("summary").click()
    disable = page.locator("#two-factor-disable")
    expect(disable).to_be_visible()
    disable.get_by_label("Password").fill(PASSWORD)
    disable.get_by_label("Code from the app, or a recovery code").fill(recovery_codes[0])
    disable.get_by_role("button", name="Turn off").click()
    expect(page.locator("#two-factor-status")).to_contain_text("Off")
    page.locator("#logout").click()
    log_in(page, HEDY)
    expect(page.locator("#whoami")).to_have_text(f"Hedy <{HEDY}>")
