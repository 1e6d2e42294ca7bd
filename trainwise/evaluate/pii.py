"""Columns that look like personal data, found by pattern on a sample of their values.

Patterns: e-mail addresses, phone numbers (international or North-American style), payment card
numbers (13-19 digits that pass the Luhn checksum, ISO/IEC 7812-1), US social security numbers
and IBANs. A column is flagged when at least `min_share` of its sampled non-empty values match
one pattern; the finding names the column, the pattern and the share, never the values.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

PATTERNS = {
    "email": re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$"),
    "phone": re.compile(r"^\+?\d{1,3}?[\s.-]?\(?\d{2,4}\)?[\s.-]?\d{3,4}[\s.-]?\d{3,4}$"),
    "us_ssn": re.compile(r"^\d{3}-\d{2}-\d{4}$"),
    "iban": re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$"),
}
CARD = re.compile(r"^\d(?:[ -]?\d){12,18}$")
SAMPLE = 1000
MIN_SHARE = 0.3


def luhn_valid(digits: str) -> bool:
    """Luhn checksum (ISO/IEC 7812-1) of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card(value: str) -> bool:
    return bool(CARD.match(value)) and luhn_valid(re.sub(r"[ -]", "", value))


def column_pii(values: pd.Series, min_share: float = MIN_SHARE, seed: int = 0) -> dict | None:
    """{'pattern', 'share'} of the best-matching pattern if it reaches `min_share`, else None."""
    s = values.dropna()
    if s.empty:
        return None
    if len(s) > SAMPLE:
        s = s.sample(SAMPLE, random_state=seed)
    is_text = s.dtype == object or pd.api.types.is_string_dtype(s)
    if not is_text and not pd.api.types.is_integer_dtype(s):
        return None
    text = s.astype(str).str.strip()
    shares = {"card_number": float(np.mean([is_card(v) for v in text]))}
    if is_text:  # integer columns are checked for card numbers only: ids would look like phone numbers
        shares.update({name: float(text.str.match(p).mean()) for name, p in PATTERNS.items()})
    name, share = max(shares.items(), key=lambda kv: kv[1])
    return {"pattern": name, "share": share} if share >= min_share else None


def find_pii(frame: pd.DataFrame, min_share: float = MIN_SHARE) -> dict[str, dict]:
    """column -> {'pattern', 'share'} for every column that looks like personal data."""
    out = {}
    for col in frame.columns:
        hit = column_pii(frame[col], min_share)
        if hit:
            out[str(col)] = hit
    return out
