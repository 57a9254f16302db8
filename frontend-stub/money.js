// Money: the API counts integer minor units (cents, yen, ...). The number of decimals of a
// currency comes from CLDR, as on the server (Babel); browsers carry the same data in Intl.

export function currencyDigits(currency) {
  return new Intl.NumberFormat("en", { style: "currency", currency }).resolvedOptions()
    .maximumFractionDigits;
}

// "12.5" EUR -> 1250, exactly: the digits are joined as text, never multiplied as floats.
// A comma is accepted as the decimal separator too ("12,50").
export function toMinor(text, currency) {
  const digits = currencyDigits(currency);
  const match = /^(\d+)(?:[.,](\d*))?$/.exec(text.trim());
  const fraction = match?.[2] ?? "";
  if (!match || fraction.length > digits) {
    const decimals = digits ? `at most ${digits} decimal${digits > 1 ? "s" : ""}` : "no decimals";
    throw new Error(`Amount: enter a number with ${decimals} for ${currency}.`);
  }
  const minor = Number(match[1] + fraction.padEnd(digits, "0"));
  if (!Number.isSafeInteger(minor)) throw new Error("Amount: that is too large.");
  return minor;
}

// 4500 EUR -> "€45.00"; signed: "+€45.00" / "-€45.00" (zero stays unsigned).
export function formatMoney(minor, currency, { signed = false } = {}) {
  const format = new Intl.NumberFormat(undefined, {
    style: "currency",
    currency,
    signDisplay: signed ? "exceptZero" : "auto",
  });
  return format.format(minor / 10 ** currencyDigits(currency));
}
