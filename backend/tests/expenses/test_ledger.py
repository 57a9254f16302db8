"""The ledger's pure arithmetic: examples, then properties over many random ledgers."""

import math
import uuid
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.expenses import ledger
from app.expenses.ledger import LedgerError, Payment, SplitEntry, SplitMode
from tests.expenses.strategies import (
    CURRENCIES,
    ExpenseSpec,
    SettlementSpec,
    expenses,
    settlements,
)
from tests.expenses.support import check_settles

A, B, C, D = sorted(uuid.UUID(int=n) for n in (1, 2, 3, 4))


def test_minor_unit_exponents_come_from_cldr() -> None:
    assert [ledger.minor_unit_exponent(c) for c in ("JPY", "EUR", "BHD", "CLF")] == [0, 2, 3, 4]


@pytest.mark.parametrize(
    ("amount", "currency", "base", "rate", "expected"),
    [
        (10_001, "USD", "EUR", "0.5", 5000),  # 5000.5 → even
        (10_003, "USD", "EUR", "0.5", 5002),  # 5001.5 → even
        (10_000, "USD", "JPY", "150.255", 15_026),  # 15025.5 yen → even
        (100, "JPY", "EUR", "0.0061", 61),  # 0.61 EUR
        (1_234, "BHD", "EUR", "2.5", 308),  # 3.085 EUR → 308.5 cents → even
        (1, "EUR", "BHD", "0.4", 4),  # 0.01 EUR = 0.004 BHD
        (10**15, "EUR", "EUR", "1", 10**15),
    ],
)
def test_conversion_rounds_half_to_even_once(
    amount: int, currency: str, base: str, rate: str, expected: int
) -> None:
    assert ledger.to_base_minor(amount, currency, base, Decimal(rate)) == expected


def test_allocation_gives_left_over_units_to_largest_remainders_then_lowest_id() -> None:
    assert ledger.allocate(100, [(C, 1), (A, 1), (B, 1)]) == {A: 34, B: 33, C: 33}
    assert ledger.allocate(1000, [(A, 1), (B, 2), (C, 3)]) == {A: 167, B: 333, C: 500}
    assert ledger.allocate(2, [(D, 1), (C, 1), (B, 1)]) == {B: 1, C: 1, D: 0}
    assert ledger.allocate(0, [(A, 1), (B, 0)]) == {A: 0, B: 0}
    assert ledger.allocate(10, [(A, Decimal("12.5")), (B, Decimal("87.5"))]) == {A: 1, B: 9}


def test_a_zero_weight_gets_nothing() -> None:
    assert ledger.allocate(7, [(A, 0), (B, 3), (C, 4)]) == {A: 0, B: 3, C: 4}


def _price(**changes: object) -> ledger.PricedExpense:
    arguments: dict[str, object] = {
        "amount_minor": 1000,
        "currency": "EUR",
        "base_currency": "EUR",
        "exchange_rate": None,
        "payers": [Payment(A, 1000)],
        "split_mode": SplitMode.EQUAL,
        "splits": [SplitEntry(A), SplitEntry(B)],
    }
    return ledger.price_expense(**{**arguments, **changes})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"payers": [Payment(A, 999)]}, "payers_do_not_sum"),
        ({"payers": []}, "no_payer"),
        ({"payers": [Payment(A, 500), Payment(A, 500)]}, "duplicate_participant"),
        ({"payers": [Payment(A, 1001), Payment(B, -1)]}, "negative_amount"),
        ({"splits": []}, "no_split"),
        ({"splits": [SplitEntry(A), SplitEntry(A)]}, "duplicate_participant"),
        ({"splits": [SplitEntry(A, shares=1)]}, "split_values_mismatch"),
        (
            {"split_mode": SplitMode.SHARES, "splits": [SplitEntry(A, shares=0)]},
            "shares_all_zero",
        ),
        (
            {"split_mode": SplitMode.SHARES, "splits": [SplitEntry(A, percent=Decimal(1))]},
            "split_values_mismatch",
        ),
        (
            {
                "split_mode": SplitMode.PERCENTAGES,
                "splits": [
                    SplitEntry(A, percent=Decimal("50")),
                    SplitEntry(B, percent=Decimal("49.999999")),
                ],
            },
            "percentages_do_not_sum",
        ),
        (
            {"split_mode": SplitMode.EXACT, "splits": [SplitEntry(A, amount_minor=999)]},
            "splits_do_not_sum",
        ),
        ({"currency": "USD"}, "exchange_rate_required"),
        ({"exchange_rate": Decimal("1.5")}, "exchange_rate_not_applicable"),
        ({"currency": "USD", "exchange_rate": Decimal(0)}, "invalid_exchange_rate"),
        ({"amount_minor": -1}, "amount_out_of_range"),
        (
            {
                "amount_minor": 10**15,
                "payers": [Payment(A, 10**15)],
                "currency": "USD",
                "exchange_rate": Decimal(2),
            },
            "amount_out_of_range",
        ),
    ],
)
def test_price_expense_refuses(changes: dict[str, object], code: str) -> None:
    with pytest.raises(LedgerError) as refused:
        _price(**changes)
    assert refused.value.code == code


def test_exact_decimal_percentages_sum_where_floats_would_not() -> None:
    priced = _price(
        split_mode=SplitMode.PERCENTAGES,
        splits=[
            SplitEntry(A, percent=Decimal("34.3")),
            SplitEntry(B, percent=Decimal("29.9")),
            SplitEntry(C, percent=Decimal("35.8")),
        ],
    )
    assert [s.amount_minor for s in priced.splits] == [343, 299, 358]


def test_settle_up_examples() -> None:
    assert ledger.settle_up({}) == []
    assert ledger.settle_up({A: 0, B: 0}) == []
    assert ledger.settle_up({A: 5, B: -5}) == [ledger.Transfer(B, A, 5)]
    plan = ledger.settle_up({A: 60, B: -100, C: 40, D: 0})
    assert plan == [ledger.Transfer(B, A, 60), ledger.Transfer(B, C, 40)]
    with pytest.raises(ValueError, match="sum to zero"):
        ledger.settle_up({A: 1})


# --- properties ------------------------------------------------------------------------------

weights = st.lists(
    st.tuples(st.uuids(), st.integers(0, 1000)), min_size=1, max_size=12, unique_by=lambda w: w[0]
).filter(lambda ws: sum(w for _, w in ws) > 0)


@settings(max_examples=1000, deadline=None, database=None)
@given(total=st.integers(0, 10**15), weights=weights, data=st.data())
def test_allocation_sums_exactly_is_fair_and_ignores_input_order(
    total: int, weights: list[tuple[uuid.UUID, int]], data: st.DataObject
) -> None:
    shares = ledger.allocate(total, weights)
    assert sum(shares.values()) == total
    weight_sum = sum(w for _, w in weights)
    for key, weight in weights:
        exact = Fraction(total * weight, weight_sum)
        assert math.floor(exact) <= shares[key] <= math.ceil(exact)
    shuffled = data.draw(st.permutations(weights))
    assert ledger.allocate(total, shuffled) == shares


@st.composite
def trip_ledgers(
    draw: st.DrawFn,
) -> tuple[str, list[uuid.UUID], list[ExpenseSpec], list[SettlementSpec]]:
    base = draw(st.sampled_from(CURRENCIES))
    people = draw(st.lists(st.uuids(), min_size=2, max_size=8, unique=True))
    spent = draw(st.lists(expenses(people, base), max_size=8))
    paid_back = draw(st.lists(settlements(people, base), max_size=4))
    return base, people, spent, paid_back


def _price_spec(spec: ExpenseSpec, base: str) -> ledger.PricedExpense:
    return ledger.price_expense(
        amount_minor=spec.amount_minor,
        currency=spec.currency,
        base_currency=base,
        exchange_rate=spec.exchange_rate,
        payers=spec.payers,
        split_mode=spec.split_mode,
        splits=spec.splits,
    )


@settings(max_examples=1000, deadline=None, database=None)
@given(trip=trip_ledgers())
def test_random_ledgers_balance_to_zero_and_the_plan_settles_everyone(
    trip: tuple[str, list[uuid.UUID], list[ExpenseSpec], list[SettlementSpec]],
) -> None:
    base, people, spent, paid_back = trip
    totals: dict[str, dict[uuid.UUID, int]] = {
        kind: defaultdict(int) for kind in ("paid", "owed", "out", "in")
    }
    for spec in spent:
        priced = _price_spec(spec, base)
        exact_base = (
            Fraction(spec.amount_minor)
            * Fraction(priced.exchange_rate)
            * Fraction(10)
            ** (ledger.minor_unit_exponent(base) - ledger.minor_unit_exponent(spec.currency))
        )
        assert abs(priced.base_amount_minor - exact_base) <= Fraction(1, 2)
        for column in ("payers", "splits"):
            rows = getattr(priced, column)
            assert sum(r.amount_minor for r in rows) == spec.amount_minor
            assert sum(r.base_amount_minor for r in rows) == priced.base_amount_minor
        for payer in priced.payers:
            totals["paid"][payer.participant_id] += payer.base_amount_minor
        for split in priced.splits:
            totals["owed"][split.participant_id] += split.base_amount_minor
    for settlement in paid_back:
        rate = ledger.resolve_rate(settlement.currency, base, settlement.exchange_rate)
        amount = ledger.to_base_minor(settlement.amount_minor, settlement.currency, base, rate)
        totals["out"][settlement.from_participant_id] += amount
        totals["in"][settlement.to_participant_id] += amount
    balances = {
        person: ledger.net_balance(
            paid=totals["paid"][person],
            owed=totals["owed"][person],
            settlements_paid=totals["out"][person],
            settlements_received=totals["in"][person],
        )
        for person in people
    }
    check_settles(balances)


@settings(max_examples=500, deadline=None, database=None)
@given(balances=st.lists(st.integers(-(10**12), 10**12), min_size=1, max_size=30))
def test_the_plan_for_any_zero_sum_balances(balances: list[int]) -> None:
    people = [uuid.UUID(int=n) for n in range(len(balances) + 1)]
    by_person = dict(zip(people, [*balances, -sum(balances)], strict=True))
    check_settles(by_person)
