"""Message vocabulary: MTIs, field numbers, response codes and their meanings.

Everything here is data or a pure function of a message. A message is a
``dict[str, str]`` in pyiso8583's decoded form: ``"t"`` is the MTI, ``"2"``..
``"128"`` the data elements, binary elements as hex strings.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "APPROVED",
    "F_ACQUIRER_ID",
    "F_ADDITIONAL_PRIVATE",
    "F_AMOUNT",
    "F_AUTH_CODE",
    "F_CURRENCY",
    "F_EXPIRY",
    "F_KEY_BLOCK",
    "F_MERCHANT",
    "F_NETWORK_MGMT",
    "F_ORIGINAL_DATA",
    "F_PAN",
    "F_PIN_BLOCK",
    "F_POS_CONDITION",
    "F_POS_ENTRY",
    "F_PROCESSING_CODE",
    "F_REPLACEMENT_AMOUNTS",
    "F_RESPONSE_CODE",
    "F_RRN",
    "F_STAN",
    "F_TERMINAL",
    "F_TRANSMISSION_TIME",
    "HANDLED_MTIS",
    "KEY_EXCHANGE",
    "MANDATORY_FIELDS",
    "RESPONSE_CODES",
    "is_ecommerce",
    "is_refund",
    "is_repeat",
    "is_request",
    "is_reversal",
    "original_mti",
    "response_code_meaning",
    "response_mti",
]

F_PAN = "2"
F_PROCESSING_CODE = "3"
F_AMOUNT = "4"
F_TRANSMISSION_TIME = "7"
F_STAN = "11"
F_EXPIRY = "14"
F_POS_ENTRY = "22"
F_POS_CONDITION = "25"
F_ACQUIRER_ID = "32"
F_TRACK2 = "35"
F_RRN = "37"
F_AUTH_CODE = "38"
F_RESPONSE_CODE = "39"
F_TERMINAL = "41"
F_MERCHANT = "42"
F_TRACK1 = "45"
F_ADDITIONAL_PRIVATE = "48"
F_CURRENCY = "49"
F_PIN_BLOCK = "52"
F_ICC = "55"
F_MAC = "64"
F_NETWORK_MGMT = "70"
F_ORIGINAL_DATA = "90"
F_REPLACEMENT_AMOUNTS = "95"
F_KEY_BLOCK = "120"  # key exchange: the new key's TR-31 block out, its KCV back
F_MAC2 = "128"

APPROVED = "00"
KEY_EXCHANGE = "161"  # F70 of an 0800 that carries a new zone PIN key in F120

# Request MTI -> response MTI.  Repeats (0401, 0421) are answered like the
# original (ISO 8583:1987, 4.3: the last digit is the message origin/repeat).
_RESPONSE_MTI = {
    "0100": "0110",
    "0101": "0110",
    "0200": "0210",
    "0201": "0210",
    "0400": "0410",
    "0401": "0410",
    "0420": "0430",
    "0421": "0430",
    "0500": "0510",
    "0501": "0510",
    "0800": "0810",
    "0801": "0810",
}

HANDLED_MTIS = frozenset(_RESPONSE_MTI) | frozenset(_RESPONSE_MTI.values())

_FINANCIAL = ("2", "3", "4", "11", "41", "49")
# Mandatory data elements of requests the switch accepts.  Reversals also need
# F90 or F37 to find their original; that "either" rule lives in the codec.
MANDATORY_FIELDS: Mapping[str, tuple[str, ...]] = {
    "0100": _FINANCIAL,
    "0101": _FINANCIAL,
    "0200": _FINANCIAL,
    "0201": _FINANCIAL,
    "0400": _FINANCIAL,
    "0401": _FINANCIAL,
    "0420": _FINANCIAL,
    "0421": _FINANCIAL,
    "0800": ("11", "70"),
    "0801": ("11", "70"),
    "0500": ("11",),
    "0110": ("11", "39"),
    "0210": ("11", "39"),
    "0410": ("11", "39"),
    "0430": ("11", "39"),
    "0810": ("11", "39"),
    "0510": ("11", "39"),
}

RESPONSE_CODES: Mapping[str, str] = {
    "00": "Approved",
    "05": "Do not honour",
    "12": "Invalid transaction",
    "13": "Invalid amount",
    "14": "Invalid card number",
    "15": "No such issuer",
    "25": "Unable to locate original transaction",
    "30": "Format error",
    "41": "Lost card, pick up",
    "43": "Stolen card, pick up",
    "51": "Insufficient funds",
    "54": "Expired card",
    "55": "Incorrect PIN",
    "57": "Transaction not permitted to cardholder",
    "58": "Transaction not permitted to terminal",
    "59": "Suspected fraud",
    "61": "Exceeds withdrawal amount limit",
    "62": "Restricted card",
    "63": "Security violation",
    "65": "Exceeds withdrawal frequency limit",
    "68": "Response received too late",
    "91": "Issuer or switch inoperative",
    "94": "Duplicate transmission",
    "96": "System malfunction",
    "N7": "Decline for CVV2 failure",
}


def response_code_meaning(code: str) -> str:
    return RESPONSE_CODES.get(code, "Unknown response code")


def response_mti(mti: str) -> str:
    """The MTI that answers ``mti`` (0100 -> 0110, 0401 -> 0410...)."""
    try:
        return _RESPONSE_MTI[mti]
    except KeyError:
        # Any other request class: set the function digit to "response".
        if len(mti) == 4 and mti.isdigit() and mti[2] in "02":
            return mti[:2] + str(int(mti[2]) + 1) + "0"
        raise ValueError(f"MTI {mti!r} is not a request the switch answers") from None


def is_request(mti: str) -> bool:
    return len(mti) == 4 and mti[2] in "02"


def is_reversal(mti: str) -> bool:
    return mti[:2] == "04"


def is_repeat(mti: str) -> bool:
    return mti[3:] == "1"


def original_mti(mti: str) -> str:
    """The first-transmission form of a repeat: 0401 -> 0400, 0421 -> 0420."""
    return mti[:3] + "0" if is_repeat(mti) else mti


def is_refund(message: Mapping[str, str]) -> bool:
    """Processing code 20xxxx is a refund / credit to the cardholder."""
    return message.get(F_PROCESSING_CODE, "")[:2] == "20"


def is_ecommerce(message: Mapping[str, str]) -> bool:
    """Card-not-present e-commerce: POS entry mode 81x, or POS condition 59."""
    return message.get(F_POS_ENTRY, "")[:2] == "81" or message.get(F_POS_CONDITION) == "59"
