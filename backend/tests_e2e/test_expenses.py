"""Expenses on the trip page: the category picked in the form is the one the API keeps and the
list shows; the list says when the server chose the exchange rate (the ECB's of that day)."""

import uuid
from collections.abc import Callable

from playwright.sync_api import Page, expect

from tests_e2e.support import Stack, log_in

QUIN = "quin@example.com"
# The API's fixed list of categories, as the form offers them.
CATEGORIES = ["Accommodation", "Transport", "Food", "Groceries", "Activities", "Shopping", "Fees"]

DRAW = """async (expense) => {
  const { expenseRow } = await import("./rows.js");
  const row = expenseRow(expense);
  return [...row.children].map((child) => `${child.className}=${child.textContent}`);
}"""


def test_the_category_of_an_expense_round_trips(stack: Stack, new_page: Callable[[], Page]) -> None:
    stack.register(QUIN, "Quin")
    token = stack.log_in(QUIN)
    trip_id = str(uuid.uuid4())
    trip = {
        "id": trip_id,
        "name": "Bergen",
        "destination": "Norway",
        "start_date": "2027-08-01",
        "end_date": "2027-08-03",
        "base_currency": "EUR",
    }
    stack.request("POST", "/trips", token=token, body=trip)
    page = new_page()
    log_in(page, QUIN)
    expect(page.locator("#whoami")).to_contain_text(QUIN)
    page.goto(f"{stack.app_url}#/trips/{trip_id}")
    expect(page.locator("#trip-title")).to_have_text("Bergen")
    expect(page.locator("#expenses-empty")).to_be_visible()

    form = page.locator("#expense-form")
    category = form.get_by_label("Category")
    expect(category).to_have_value("other")  # the default
    expect(category.locator("option")).to_have_text([*CATEGORIES, "Other"])
    form.get_by_label("Title").fill("Fish market lunch")
    category.select_option("food")
    form.get_by_label("Amount").fill("41.50")
    form.get_by_role("button", name="Add expense").click()
    expenses = page.locator("[data-testid=expense]")
    expect(expenses).to_have_count(1)
    expect(category).to_have_value("other")  # the form starts again from the default
    form.get_by_label("Title").fill("Postcards")
    form.get_by_label("Amount").fill("6")
    form.get_by_role("button", name="Add expense").click()
    expect(expenses).to_have_count(2)
    expect(page.locator("#expenses-empty")).to_be_hidden()
    expect(expenses.filter(has_text="Fish market lunch").locator(".expense-category")).to_have_text(
        "food"
    )
    expect(expenses.filter(has_text="Fish market lunch").locator(".expense-amount")).to_have_text(
        "€41.50"
    )
    expect(expenses.filter(has_text="Postcards").locator(".expense-category")).to_have_text("other")
    kept = stack.request("GET", f"/trips/{trip_id}/expenses", token=token)["items"]
    assert sorted((e["title"], e["category"]) for e in kept) == [
        ("Fish market lunch", "food"),
        ("Postcards", "other"),
    ]
    expect(page.locator("#error")).to_be_hidden()


def test_an_expense_row_says_when_the_rate_is_the_ecbs(new_page: Callable[[], Page]) -> None:
    page = new_page()
    expense = {
        "id": str(uuid.uuid4()),
        "title": "Ferry",
        "category": "transport",
        "spent_on": "2027-08-02",
        "amount_minor": 45000,
        "currency": "NOK",
        "base_currency": "EUR",
        "base_amount_minor": 3861,
    }
    ecb = {**expense, "rate_source": "ecb", "rate_date": "2027-07-30"}
    assert page.evaluate(DRAW, ecb) == [
        "expense-title=Ferry",
        "badge expense-category=transport",
        "expense-day muted=Mon, Aug 2",
        "amount expense-amount=NOK\u00a0450.00 (€38.61)",
        "expense-rate muted=ECB rate of 2027-07-30",
    ]
    # A rate the client sent, or a server that does not say: nothing about the rate.
    for other in ({**expense, "rate_source": "client", "rate_date": None}, expense):
        assert not any(part.startswith("expense-rate") for part in page.evaluate(DRAW, other))
    # Amounts hidden from the reader: none shows, in either currency.
    hidden = {**ecb, "amount_minor": None, "base_amount_minor": None}
    assert "amount expense-amount=amount hidden" in page.evaluate(DRAW, hidden)
