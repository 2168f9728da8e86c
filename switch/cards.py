"""Card numbers: Luhn, scheme by BIN, masking, keyed tokens, expiry.

PCI DSS lets us show at most the first six and last four digits of a PAN;
:func:`mask_pan` is the only way a PAN leaves the switch in readable form.
:func:`pan_token` is a keyed HMAC-SHA256 so the journal, the simulators'
ledgers and settlement files can match a card without storing it.
"""

from __future__ import annotations

import datetime as dt
import re

from cryptography.hazmat.primitives import hashes, hmac

__all__ = [
    "SCHEMES",
    "expired",
    "luhn_check_digit",
    "luhn_valid",
    "mask_pan",
    "mask_text",
    "pan_token",
    "scheme",
]

SCHEMES = ("visa", "mastercard", "maestro", "belkart", "unknown")


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²", which int() refuses."""
    return text.isascii() and text.isdigit()


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass Luhn; ValueError unless digits."""
    if not _digits(partial):
        raise ValueError("Luhn needs a string of digits")
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(pan: str) -> bool:
    if not (12 <= len(pan) <= 19) or not _digits(pan):
        return False
    return luhn_check_digit(pan[:-1]) == pan[-1]


def scheme(pan: str) -> str:
    """Card scheme from the BIN; total: every string gets one of SCHEMES."""
    if not _digits(pan[:1]):
        return "unknown"
    if pan.startswith("9112"):
        return "belkart"
    if pan.startswith("4"):
        return "visa"
    two = int(pan[:2]) if len(pan) >= 2 and _digits(pan[:2]) else -1
    four = int(pan[:4]) if len(pan) >= 4 and _digits(pan[:4]) else -1
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two == 50 or 56 <= two <= 69:
        return "maestro"
    return "unknown"


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits, the rest as ``*``; short values are fully masked."""
    if len(pan) < 13:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


# Any run of 13 or more digits: a PAN glued to other digits must not slip out.
_PAN_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{13,}(?![0-9])")


def mask_text(text: str) -> str:
    """Mask every PAN-looking run of 13 or more digits in free text (log lines)."""
    return _PAN_IN_TEXT.sub(lambda m: mask_pan(m.group(0)), text)


def pan_token(pan: str, key: bytes) -> str:
    """Keyed HMAC-SHA256 of the PAN, hex, 32 characters: joins without the PAN."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(pan.encode("utf-8"))
    return mac.finalize()[:16].hex()


def expired(expiry_yymm: str, today: dt.date) -> bool:
    """True when the YYMM expiry date is before ``today``'s month."""
    if len(expiry_yymm) != 4 or not _digits(expiry_yymm):
        return True
    year, month = 2000 + int(expiry_yymm[:2]), int(expiry_yymm[2:])
    if not 1 <= month <= 12:
        return True
    return (year, month) < (today.year, today.month)
