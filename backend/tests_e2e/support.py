"""Helpers for the browser tests: the running stack, screenshots, and the steps a person takes."""

import email
import email.policy
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from app.core.db import REPO_DIR

# Screenshots of the main screens, referenced from the README.
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOTS_DIR", REPO_DIR / "docs" / "screenshots"))
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Stack:
    base_url: str  # the API, e.g. http://127.0.0.1:41234
    outbox: Path

    @property
    def app_url(self) -> str:
        return f"{self.base_url}/app/"

    def mail_to(self, address: str, subject_contains: str = "") -> str:
        """The text of the newest message to `address` (whose subject contains
        `subject_contains`), waiting a little for the outbox worker to write it."""
        deadline = time.monotonic() + 10
        while True:
            found: list[tuple[float, str]] = []
            for path in self.outbox.glob("*.eml"):  # named by message id, not by address
                with path.open("rb") as file:
                    message = email.message_from_binary_file(file, policy=email.policy.default)
                if message["To"] == address and subject_contains in message["Subject"]:
                    body = message.get_body(("plain",))
                    assert body is not None
                    found.append((path.stat().st_mtime, body.get_content()))  # type: ignore[attr-defined]
            if found:
                return max(found)[1]
            assert time.monotonic() < deadline, f"no mail to {address} in {self.outbox}"
            time.sleep(0.05)

    def mailed_token(self, address: str) -> str:
        """The verification token of the newest verification mail sent to `address`."""
        text = self.mail_to(address, "Confirm your email address")
        return next(line[7:] for line in text.splitlines() if line.startswith("token: "))

    def mailed_link(self, address: str, subject_contains: str) -> str:
        """The link into the client in the newest such mail to `address`."""
        text = self.mail_to(address, subject_contains)
        return next(line for line in text.splitlines() if line.startswith(self.app_url))

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: object = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One API call from outside the browsers (another device); its JSON answer, if any."""
        sent = {"Accept": "application/json", **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
            f"{self.base_url}{path}", data=data, headers=sent, method=method
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            text = response.read()
        return json.loads(text) if text else None

    def register(self, address: str, full_name: str) -> None:
        """An account made through the API, for tests that are not about registering."""
        self.request(
            "POST",
            "/auth/register",
            body={"email": address, "password": PASSWORD, "full_name": full_name},
        )

    def verify_email(self, address: str) -> None:
        self.request("POST", "/auth/verify-email", body={"token": self.mailed_token(address)})

    def status(self, method: str, path: str, **options: Any) -> int:
        """The status of one API call (`request`'s options), errors included."""
        try:
            self.request(method, path, **options)
        except urllib.error.HTTPError as error:
            return error.code
        return 200

    def sign_in(self, address: str, device_label: str = "Phone") -> dict[str, Any]:
        """A new session, as another device of the user would start it: the token response."""
        form = {"username": address, "password": PASSWORD, "device_label": device_label}
        request = urllib.request.Request(  # noqa: S310 (http://127.0.0.1 only)
            f"{self.base_url}/auth/login", data=urllib.parse.urlencode(form).encode()
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            tokens: dict[str, Any] = json.load(response)
        return tokens

    def log_in(self, address: str) -> str:
        """An access token, as another device of the user would hold it."""
        token: str = self.sign_in(address)["access_token"]
        return token


def screenshot(page: Page, name: str) -> None:
    """A full-page picture once no request is running (no spinner in the picture). Fixed
    addresses, dates and a fresh database make the pictures the same from run to run."""
    expect(page.locator("#spinner")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # The footer shows the API's address, here on a random port. (Playwright's `style` option
    # would not do: the page's Content-Security-Policy refuses injected style sheets.)
    page.locator("footer").evaluate("footer => { footer.hidden = true; }")
    page.evaluate("() => document.fonts.ready.then(() => new Promise(requestAnimationFrame))")
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True, animations="disabled")
    page.locator("footer").evaluate("footer => { footer.hidden = false; }")


# ---------------------------------------------------------------- steps, as a person takes them


def register(page: Page, full_name: str, address: str) -> None:
    form = page.locator("#register-form")
    form.get_by_label("Full name").fill(full_name)
    form.get_by_label("Email").fill(address)
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Register").click()
    expect(page.locator("#whoami")).to_have_text(f"{full_name} <{address}>")


def log_in(page: Page, address: str, password: str = PASSWORD) -> None:
    form = page.locator("#login-form")
    form.get_by_label("Email").fill(address)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Log in").click()


def verify_email(page: Page, stack: Stack, address: str) -> None:
    form = page.locator("#verify-form")
    expect(form).to_be_visible()
    form.get_by_label("Token").fill(stack.mailed_token(address))
    form.get_by_role("button", name="Verify").click()
    expect(form).to_be_hidden()


def create_trip(
    page: Page, name: str, destination: str, start: str, end: str, timezone: str = "UTC"
) -> None:
    form = page.locator("#trip-form")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Destination").fill(destination)
    form.get_by_label("Start").fill(start)
    form.get_by_label("End").fill(end)
    form.get_by_label("Time zone").fill(timezone)
    form.get_by_role("button", name="Create trip").click()
