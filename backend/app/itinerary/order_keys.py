"""Order keys: strings that always fit between two others, so a move rewrites one row only.

A key is a base-62 fraction 0.d1d2d3... written as its digits, without the leading "0." and
without trailing zeros. Digits are ASCII `0-9A-Za-z`, so keys compare as plain byte strings:
in Python and in PostgreSQL under the "C" collation (the column declares it). Between any two
different keys there is always another, but inserting again and again into the same gap
lengthens keys (a character every ~5 inserts): past REBALANCE_LENGTH the list is given fresh,
evenly spread keys (`spread_keys`), all rewritten at once.
"""

from collections.abc import Collection

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE = len(DIGITS)
# The first key of an empty list: the middle, leaving room on both sides.
FIRST_KEY = DIGITS[BASE // 2]
# The column's cap; with rebalancing, keys never come near it.
MAX_KEY_LENGTH = 1024
# A new key longer than this makes its list rebalance (app.itinerary.service); spread keys
# of a list of n items are about log62(n²) characters, so this leaves ~100 inserts per gap.
REBALANCE_LENGTH = 24

_VALUE = {digit: value for value, digit in enumerate(DIGITS)}


def is_order_key(key: str) -> bool:
    return (
        0 < len(key) <= MAX_KEY_LENGTH
        and all(digit in _VALUE for digit in key)
        and key[-1] != DIGITS[0]
    )


def key_between(before: str | None, after: str | None) -> str:
    """A key sorting strictly after `before` and strictly before `after`.

    `None` leaves that side open: `key_between(last, None)` appends, `key_between(None,
    first)` prepends, `key_between(None, None)` starts a list. Appending and prepending step
    one digit at a time (keys grow by one character every ~30 such inserts); inserting
    between two keys takes the midpoint (a character every ~5 inserts into the same gap).
    """
    for key in (before, after):
        if key is not None and not is_order_key(key):
            raise ValueError(f"not an order key: {key!r}")
    if before is not None and after is not None and before >= after:
        raise ValueError(f"{before!r} does not sort before {after!r}")
    if after is None:
        return FIRST_KEY if before is None else _step_up(before)
    if before is None:
        return _step_down(after)
    return _midpoint(before, after)


def _step_up(key: str) -> str:
    """A short key after `key`: its first digit that can grow, grown by one."""
    for index, digit in enumerate(key):
        if _VALUE[digit] < BASE - 1:
            return key[:index] + DIGITS[_VALUE[digit] + 1]
    return key + FIRST_KEY


def _step_down(key: str) -> str:
    """A short key before `key`: its first non-zero digit lowered, without ending in zero."""
    for index, digit in enumerate(key):
        value = _VALUE[digit]
        if value > 1:
            return key[:index] + DIGITS[value - 1]
        if value == 1:
            # "1" cannot become "0" (a trailing zero); a shorter prefix or "0" + middle can.
            if index + 1 < len(key):
                return key[: index + 1]
            return key[:index] + DIGITS[0] + FIRST_KEY
    raise ValueError(f"not an order key: {key!r}")  # unreachable: keys end in a non-zero digit


def _midpoint(low: str, high: str) -> str:
    """A key between `low` and `high` (low < high; low may be "", i.e. zero)."""
    # Keep the digits both share; `low` reads as zeros past its end.
    shared = 0
    while shared < len(high) and (low[shared] if shared < len(low) else DIGITS[0]) == high[shared]:
        shared += 1
    prefix, low, high = high[:shared], low[shared:], high[shared:]
    low_digit = _VALUE[low[0]] if low else 0
    high_digit = _VALUE[high[0]]
    if high_digit - low_digit > 1:
        return prefix + DIGITS[(low_digit + high_digit) // 2]
    # Neighbouring first digits: `high`'s first digit alone still sorts below a longer `high`...
    if len(high) > 1:
        return prefix + high[0]
    # ...otherwise keep `low`'s first digit and go past the rest of `low`.
    rest = low[1:]
    return prefix + DIGITS[low_digit] + (_step_up(rest) if rest else FIRST_KEY)


def _digits(value: int, width: int) -> str:
    """`value` (0 < value < 62**width) as a key of at most `width` digits."""
    digits = []
    for _ in range(width):
        value, digit = divmod(value, BASE)
        digits.append(DIGITS[digit])
    return "".join(reversed(digits)).rstrip(DIGITS[0])


def spread_keys(count: int, avoid: Collection[str] = ()) -> list[str]:
    """`count` short keys in increasing order, evenly spread, none of them in `avoid`.

    Rewriting a list's keys in one UPDATE, the unique (trip, day, key) index is checked row by
    row: a new key must not be any old key of the list, hence `avoid`. The width is chosen so
    that the gap between two keys exceeds len(avoid): skipping every avoided value can then
    never run past the end.
    """
    avoided = set(avoid)
    width = 1
    while BASE**width // (count + 1) <= len(avoided) + 1:
        width += 1
    step = BASE**width // (count + 1)
    keys: list[str] = []
    value = 0
    for index in range(1, count + 1):
        value = max(value + 1, index * step)
        while _digits(value, width) in avoided:
            value += 1
        keys.append(_digits(value, width))
    return keys
