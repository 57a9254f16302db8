"""Hypothesis strategies for random expenses and settlements, shared by the property tests."""

import itertools
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from app.expenses.ledger import Payment, SplitEntry, SplitMode

# Exponents 0, 2, 3 and 4: conversions shift both ways.
CURRENCIES = ["EUR", "USD", "JPY", "BHD", "KWD", "GBP"]  # tender in use: 0, 2 and 3 decimals
MAX_AMOUNT = 10**7

rates = st.decimals(
    min_value=Decimal("0.000001"),
    max_value=Decimal("1000"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
).filter(lambda rate: rate > 0)


@st.composite
def partition(draw: st.DrawFn, total: int, parts: int) -> list[int]:
    """`parts` non-negative integers adding up to `total`."""
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=parts - 1, max_size=parts - 1)))
    bounds = [0, *cuts, total]
    return [high - low for low, high in itertools.pairwise(bounds)]


@st.composite
def subset(draw: st.DrawFn, people: list[uuid.UUID]) -> list[uuid.UUID]:
    return draw(st.lists(st.sampled_from(people), min_size=1, max_size=len(people), unique=True))


@dataclass(frozen=True)
class ExpenseSpec:
    amount_minor: int
    currency: str
    exchange_rate: Decimal | None
    payers: list[Payment]
    split_mode: SplitMode
    splits: list[SplitEntry]

    def as_body(self, title: str = "Random") -> dict[str, Any]:
        """The same expense as an API body (for ExpenseCreate)."""
        return {
            "title": title,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "exchange_rate": self.exchange_rate,
            "spent_on": "2027-05-02",
            "payers": [
                {"participant_id": p.participant_id, "amount_minor": p.amount_minor}
                for p in self.payers
            ],
            "split_mode": self.split_mode,
            "splits": [
                {
                    "participant_id": s.participant_id,
                    "shares": s.shares,
                    "percent": s.percent,
                    "amount_minor": s.amount_minor,
                }
                for s in self.splits
            ],
        }


@st.composite
def expenses(draw: st.DrawFn, people: list[uuid.UUID], base_currency: str) -> ExpenseSpec:
    currency = draw(st.sampled_from(CURRENCIES))
    rate = None if currency == base_currency else draw(rates)
    amount = draw(st.integers(1, MAX_AMOUNT))
    payers = draw(subset(people))
    paid = draw(partition(amount, len(payers)))
    mode = draw(st.sampled_from(SplitMode))
    sharing = draw(subset(people))
    if mode is SplitMode.EQUAL:
        splits = [SplitEntry(pid) for pid in sharing]
    elif mode is SplitMode.SHARES:
        weights = draw(st.lists(st.integers(0, 50), min_size=len(sharing), max_size=len(sharing)))
        weights[0] = weights[0] or 1  # at least one share
        splits = [SplitEntry(pid, shares=w) for pid, w in zip(sharing, weights, strict=True)]
    elif mode is SplitMode.PERCENTAGES:
        millionths = draw(partition(100_000_000, len(sharing)))
        splits = [
            SplitEntry(pid, percent=Decimal(m).scaleb(-6))
            for pid, m in zip(sharing, millionths, strict=True)
        ]
    else:
        exact = draw(partition(amount, len(sharing)))
        splits = [SplitEntry(pid, amount_minor=a) for pid, a in zip(sharing, exact, strict=True)]
    return ExpenseSpec(
        amount_minor=amount,
        currency=currency,
        exchange_rate=rate,
        payers=[Payment(pid, a) for pid, a in zip(payers, paid, strict=True)],
        split_mode=mode,
        splits=splits,
    )


@dataclass(frozen=True)
class SettlementSpec:
    from_participant_id: uuid.UUID
    to_participant_id: uuid.UUID
    amount_minor: int
    currency: str
    exchange_rate: Decimal | None


@st.composite
def settlements(draw: st.DrawFn, people: list[uuid.UUID], base_currency: str) -> SettlementSpec:
    payer, payee = draw(st.lists(st.sampled_from(people), min_size=2, max_size=2, unique=True))
    currency = draw(st.sampled_from(CURRENCIES))
    return SettlementSpec(
        from_participant_id=payer,
        to_participant_id=payee,
        amount_minor=draw(st.integers(1, MAX_AMOUNT)),
        currency=currency,
        exchange_rate=None if currency == base_currency else draw(rates),
    )
