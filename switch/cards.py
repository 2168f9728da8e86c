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


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass Luhn."""
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
    if not (12 <= len(pan) <= 19) or not pan.isdigit():
        return False
    return luhn_check_digit(pan[:-1]) == pan[-1]


def scheme(pan: str) -> str:
    """Card scheme from the BIN; total: every string gets one of SCHEMES."""
    if not pan[:1].isdigit():
        return "unknown"
    if pan.startswith("9112"):
        return "belkart"
    if pan.startswith("4"):
        return "visa"
    two = int(pan[:2]) if len(pan) >= 2 and pan[:2].isdigit() else -1
    four = int(pan[:4]) if len(pan) >= 4 and pan[:4].isdigit() else -1
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


_PAN_IN_TEXT = re.compile(r"(?<!\d)\d{13,19}(?!\d)")


def mask_text(text: str) -> str:
    """Mask every PAN-looking run of 13-19 digits in free text (log lines)."""
    return _PAN_IN_TEXT.sub(lambda m: mask_pan(m.group(0)), text)


def pan_token(pan: str, key: bytes) -> str:
    """Keyed HMAC-SHA256 of the PAN, hex, 32 characters: joins without the PAN."""
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(pan.encode("ascii"))
    return mac.finalize()[:16].hex()


def expired(expiry_yymm: str, today: dt.date) -> bool:
    """True when the YYMM expiry date is before ``today``'s month."""
    if len(expiry_yymm) != 4 or not expiry_yymm.isdigit():
        return True
    year, month = 2000 + int(expiry_yymm[:2]), int(expiry_yymm[2:])
    if not 1 <= month <= 12:
        return True
    return (year, month) < (today.year, today.month)
