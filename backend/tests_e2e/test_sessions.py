"""Sessions in the client: logging out ends the session on the server, other devices can be
signed out from the list, and an access token that stopped working is refreshed once."""

from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests_e2e.support import Stack, log_in

FRANK, GRACE = "frank@example.com", "grace@example.com"


def _tokens(page: Page) -> dict[str, str]:
    """The tokens the page keeps (sessionStorage)."""
    tokens: dict[str, str] = page.evaluate(
        "() => ({access: sessionStorage.getItem('tripsync.token'),"
        " refresh: sessionStorage.getItem('tripsync.refresh')})"
    )
    return tokens


def test_log_out_and_sign_out_another_device(stack: Stack, new_page: Callable[[], Page]) -> None:
    stack.register(FRANK, "Frank")
    phone = stack.sign_in(FRANK, device_label="Frank's phone")
    page = new_page()
    log_in(page, FRANK)
    expect(page.locator("#whoami")).to_have_text(f"Frank <{FRANK}>")

    # The list, opened: this browser (labelled by its User-Agent) and the phone.
    page.locator("#devices-card summary").click()
    devices = page.locator("[data-testid=device]")
    expect(devices).to_have_count(2)
    expect(page.locator("[data-testid=device][data-current=true]")).to_contain_text("this device")
    other = devices.filter(has_text="Frank's phone")
    expect(other.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator("[data-current=true] [data-testid=revoke-device]")).to_have_count(0)

    # Signing the phone out stops its tokens at once.
    assert stack.status("GET", "/users/me", token=phone["access_token"]) == 200
    other.get_by_role("button", name="Sign out").click()
    expect(devices).to_have_count(1)
    assert stack.status("GET", "/users/me", token=phone["access_token"]) == 401
    refreshed = {"refresh_token": phone["refresh_token"]}
    assert stack.status("POST", "/auth/refresh", body=refreshed) == 401

    # Logging out ends this session on the server too, not only in the page.
    kept = _tokens(page)
    assert stack.status("GET", "/users/me", token=kept["access"]) == 200
    page.locator("#logout").click()
    expect(page.locator("#auth-view")).to_be_visible()
    assert _tokens(page) == {"access": None, "refresh": None}
    assert stack.status("GET", "/users/me", token=kept["access"]) == 401
    assert stack.status("POST", "/auth/refresh", body={"refresh_token": kept["refresh"]}) == 401


def test_an_access_token_that_stopped_working_is_refreshed_once(
    stack: Stack, new_page: Callable[[], Page]
) -> None:
    stack.register(GRACE, "Grace")
    page = new_page()
    log_in(page, GRACE)
    expect(page.locator("#whoami")).to_have_text(f"Grace <{GRACE}>")
    before = _tokens(page)

    # As after 15 minutes: the API answers 401 to the access token; the page refreshes it once
    # and goes on, signed in.
    page.evaluate("() => sessionStorage.setItem('tripsync.token', 'expired')")
    refreshes: list[str] = []
    page.on(
        "request",
        lambda request: refreshes.append(request.url) if "/auth/refresh" in request.url else None,
    )
    page.reload()
    expect(page.locator("#whoami")).to_have_text(f"Grace <{GRACE}>")
    expect(page.locator("#trips-empty")).to_be_visible()
    after = _tokens(page)
    assert after["refresh"] != before["refresh"]
    assert len(refreshes) == 1
    # The old refresh token is used up; the session goes on with the new one.
    assert stack.status("GET", "/users/me", token=after["access"]) == 200
    page.locator("#devices-card summary").click()
    expect(page.locator("[data-testid=device]")).to_have_count(1)

    # Once the session has ended (signed out from elsewhere), the refresh fails: log in again.
    stack.request("POST", "/auth/logout", token=after["access"])
    page.reload()
    expect(page.locator("#auth-view")).to_be_visible()
    expect(page.locator("#session")).to_be_hidden()
