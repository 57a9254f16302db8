"""The ledger's arithmetic, with no database: pricing an expense, balances and the settle-up plan.

Money is an integer count of a currency's minor units (cents, yen, fils). Rules:

- **Conversion.** A rate is the number of base-currency units one unit of the expense
  currency buys, an exact `Decimal`. The base amount is
  `amount_minor * rate * 10^(base exponent - expense exponent)`, computed exactly and rounded
  once to a whole minor unit with ROUND_HALF_EVEN (banker's rounding: no drift upwards).
- **Allocation.** Splitting a total by weights gives everyone the floor of their exact share;
  the minor units left over go one each to the largest fractional remainders, ties broken by
  participant id (ascending). Shares are within one minor unit of exact and always sum to the
  total. Splits and payers are allocated this way twice, from the same weights: once in the
  expense currency and once in the base currency, so both columns sum exactly.
- **Balances** are `paid - owed + settlements paid - settlements received`, in base minor
  units. Every expense adds the same base total to "paid" and to "owed", every settlement the
  same amount to both sides, so balances always sum to exactly zero.
- **Settle-up.** Repeatedly the largest debtor pays the largest creditor the smaller of the
  two amounts (ties by participant id); each transfer clears at least one of them, so n people
  with a non-zero balance need at most n - 1 transfers.
"""

import heapq
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact
from enum import StrEnum
from fractions import Fraction
from functools import cache

from babel.numbers import get_currency_precision

# Ten thousand billion euros: far above any trip, far below BIGINT's 9.2e18.
MAX_AMOUNT_MINOR = 10**15

# Enough digits that amount * rate * 10^k is exact (Inexact is trapped to prove it).
_EXACT = Context(prec=80, traps=[Inexact])


class SplitMode(StrEnum):
    EQUAL = "equal"
    SHARES = "shares"  # integer weights
    PERCENTAGES = "percentages"  # exact decimals summing to 100
    EXACT = "exact"  # minor amounts summing to the expense's amount


class LedgerError(ValueError):
    """Input the ledger refuses; `code` is the stable, machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Payment:
    participant_id: uuid.UUID
    amount_minor: int


@dataclass(frozen=True)
class SplitEntry:
    """One participant's part of a split; which field is set depends on the split mode."""

    participant_id: uuid.UUID
    shares: int | None = None
    percent: Decimal | None = None
    amount_minor: int | None = None


@dataclass(frozen=True)
class Allocation:
    participant_id: uuid.UUID
    amount_minor: int
    base_amount_minor: int


@dataclass(frozen=True)
class PricedExpense:
    exchange_rate: Decimal
    base_amount_minor: int
    payers: list[Allocation]
    splits: list[Allocation]


@dataclass(frozen=True)
class Transfer:
    from_participant_id: uuid.UUID
    to_participant_id: uuid.UUID
    amount_minor: int


@cache
def minor_unit_exponent(currency: str) -> int:
    """Digits after the decimal point: JPY 0, EUR 2, BHD 3 (CLDR data, through Babel)."""
    return int(get_currency_precision(currency))


def resolve_rate(currency: str, base_currency: str, rate: Decimal | None) -> Decimal:
    """The rate to store: required for a foreign currency, 1 (or omitted) for the base one."""
    if currency == base_currency:
        if rate is not None and rate != 1:
            raise LedgerError(
                "exchange_rate_not_applicable",
                f"An amount in the base currency {base_currency} takes no exchange rate "
                "(omit it or send 1).",
            )
        return Decimal(1)
    if rate is None:
        raise LedgerError(
            "exchange_rate_required",
            f"An amount in {currency} needs exchange_rate: {base_currency} per 1 {currency}.",
        )
    if not rate.is_finite() or rate <= 0:
        raise LedgerError("invalid_exchange_rate", "exchange_rate must be greater than zero.")
    return rate


def to_base_minor(amount_minor: int, currency: str, base_currency: str, rate: Decimal) -> int:
    """The amount in base minor units: exact product, one ROUND_HALF_EVEN to a whole unit."""
    shift = minor_unit_exponent(base_currency) - minor_unit_exponent(currency)
    exact = _EXACT.scaleb(_EXACT.multiply(Decimal(amount_minor), rate), shift)
    return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))


def allocate(
    total: int, weights: Sequence[tuple[uuid.UUID, int | Decimal]]
) -> dict[uuid.UUID, int]:
    """Split `total` in proportion to `weights` by largest remainder (ties: participant id)."""
    if total < 0:
        raise ValueError("total must not be negative")
    if total == 0:
        return {key: 0 for key, _ in weights}
    exact_weights = [(key, Fraction(weight)) for key, weight in weights]
    weight_sum = sum((weight for _, weight in exact_weights), Fraction(0))
    if weight_sum <= 0 or any(weight < 0 for _, weight in exact_weights):
        raise ValueError("weights must be non-negative with a positive sum")
    quotients = {key: total * weight / weight_sum for key, weight in exact_weights}
    shares = {key: int(quotient) for key, quotient in quotients.items()}  # floor: all >= 0
    left_over = total - sum(shares.values())
    by_remainder = sorted(quotients, key=lambda key: (-(quotients[key] - shares[key]), key))
    for key in by_remainder[:left_over]:
        shares[key] += 1
    return shares


def _no_duplicates(participant_ids: Iterable[uuid.UUID], what: str) -> None:
    seen: set[uuid.UUID] = set()
    for participant_id in participant_ids:
        if participant_id in seen:
            raise LedgerError(
                "duplicate_participant", f"A participant appears twice among the {what}."
            )
        seen.add(participant_id)


_VALUE_FIELD = {
    SplitMode.EQUAL: None,
    SplitMode.SHARES: "shares",
    SplitMode.PERCENTAGES: "percent",
    SplitMode.EXACT: "amount_minor",
}


def split_weights(
    amount_minor: int, mode: SplitMode, splits: Sequence[SplitEntry]
) -> list[tuple[uuid.UUID, int | Decimal]]:
    """Check the splits against their mode and total; return each participant's weight."""
    if not splits:
        raise LedgerError("no_split", "An expense is shared by at least one participant.")
    _no_duplicates((split.participant_id for split in splits), "splits")
    expected = _VALUE_FIELD[mode]
    for split in splits:
        given = {
            name
            for name in ("shares", "percent", "amount_minor")
            if getattr(split, name) is not None
        }
        if given != ({expected} if expected else set()):
            wanted = f"'{expected}'" if expected else "no value"
            raise LedgerError(
                "split_values_mismatch",
                f"In '{mode}' mode every split gives {wanted} and nothing else.",
            )
    weights: list[tuple[uuid.UUID, int | Decimal]]
    if mode is SplitMode.EQUAL:
        weights = [(split.participant_id, 1) for split in splits]
    elif mode is SplitMode.SHARES:
        weights = [(split.participant_id, split.shares or 0) for split in splits]
        if sum(weight for _, weight in weights) <= 0:
            raise LedgerError("shares_all_zero", "At least one participant needs a share.")
    elif mode is SplitMode.PERCENTAGES:
        weights = [(split.participant_id, split.percent or Decimal(0)) for split in splits]
        total = sum((weight for _, weight in weights), Decimal(0))
        if total != 100:
            raise LedgerError(
                "percentages_do_not_sum", f"Percentages must add up to exactly 100, not {total}."
            )
    else:
        weights = [(split.participant_id, split.amount_minor or 0) for split in splits]
        total_minor = sum(weight for _, weight in weights)
        if total_minor != amount_minor:
            raise LedgerError(
                "splits_do_not_sum",
                f"Exact splits add up to {total_minor}, not to the amount {amount_minor}.",
            )
    return weights


def price_expense(
    *,
    amount_minor: int,
    currency: str,
    base_currency: str,
    exchange_rate: Decimal | None,
    payers: Sequence[Payment],
    split_mode: SplitMode,
    splits: Sequence[SplitEntry],
) -> PricedExpense:
    """Validate an expense and compute every payer's and participant's amounts, in both units."""
    if not 0 <= amount_minor <= MAX_AMOUNT_MINOR:
        raise LedgerError("amount_out_of_range", f"Amounts range from 0 to {MAX_AMOUNT_MINOR}.")
    rate = resolve_rate(currency, base_currency, exchange_rate)
    base_amount_minor = to_base_minor(amount_minor, currency, base_currency, rate)
    if base_amount_minor > MAX_AMOUNT_MINOR:
        raise LedgerError(
            "amount_out_of_range", "The amount converted to the base currency is too large."
        )
    if not payers:
        raise LedgerError("no_payer", "An expense has at least one payer.")
    _no_duplicates((payer.participant_id for payer in payers), "payers")
    if any(payer.amount_minor < 0 for payer in payers):
        raise LedgerError("negative_amount", "Payers' amounts must not be negative.")
    paid = sum(payer.amount_minor for payer in payers)
    if paid != amount_minor:
        raise LedgerError(
            "payers_do_not_sum", f"Payers paid {paid} in total, not the amount {amount_minor}."
        )
    payer_weights = [(payer.participant_id, payer.amount_minor) for payer in payers]
    weights = split_weights(amount_minor, split_mode, splits)
    return PricedExpense(
        exchange_rate=rate,
        base_amount_minor=base_amount_minor,
        payers=_allocations(amount_minor, base_amount_minor, payer_weights),
        splits=_allocations(amount_minor, base_amount_minor, weights),
    )


def _allocations(
    amount_minor: int, base_amount_minor: int, weights: Sequence[tuple[uuid.UUID, int | Decimal]]
) -> list[Allocation]:
    in_currency = allocate(amount_minor, weights)
    in_base = allocate(base_amount_minor, weights)
    return [
        Allocation(participant_id, in_currency[participant_id], in_base[participant_id])
        for participant_id in sorted(in_currency)
    ]


def net_balance(*, paid: int, owed: int, settlements_paid: int, settlements_received: int) -> int:
    """What the group owes this participant (negative: what they owe the group)."""
    return paid - owed + settlements_paid - settlements_received


def settle_up(balances: Mapping[uuid.UUID, int]) -> list[Transfer]:
    """Transfers that bring every balance to zero: largest debtor pays largest creditor."""
    if sum(balances.values()) != 0:
        raise ValueError("balances must sum to zero")
    # Max-heaps by amount, then the smallest participant id first.
    debtors = [
        (amount, participant_id) for participant_id, amount in balances.items() if amount < 0
    ]
    creditors = [
        (-amount, participant_id) for participant_id, amount in balances.items() if amount > 0
    ]
    heapq.heapify(debtors)
    heapq.heapify(creditors)
    transfers: list[Transfer] = []
    while debtors and creditors:
        debt, debtor = heapq.heappop(debtors)
        credit, creditor = heapq.heappop(creditors)
        amount = min(-debt, -credit)
        transfers.append(Transfer(debtor, creditor, amount))
        if -debt > amount:
            heapq.heappush(debtors, (debt + amount, debtor))
        if -credit > amount:
            heapq.heappush(creditors, (credit + amount, creditor))
    return transfers
