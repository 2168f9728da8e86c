"""Message vocabulary: response MTIs, the response-code table, message predicates."""

from __future__ import annotations

import pytest

from switch.messages import (
    HANDLED_MTIS,
    MANDATORY_FIELDS,
    RESPONSE_CODES,
    is_ecommerce,
    is_refund,
    is_repeat,
    is_request,
    is_reversal,
    original_mti,
    response_code_meaning,
    response_mti,
)


@pytest.mark.parametrize(
    ("request_mti", "answer"),
    [
        ("0100", "0110"),
        ("0200", "0210"),
        ("0400", "0410"),
        ("0401", "0410"),
        ("0420", "0430"),
        ("0421", "0430"),
        ("0800", "0810"),
        ("0120", "0130"),
    ],
)
def test_response_mti_answers_each_request(request_mti: str, answer: str) -> None:
    assert response_mti(request_mti) == answer


@pytest.mark.parametrize("mti", ["0110", "0810", "01", "abcd"])
def test_response_mti_refuses_what_is_not_a_request(mti: str) -> None:
    with pytest.raises(ValueError, match="not a request"):
        response_mti(mti)


def test_the_response_code_table_has_every_code_the_switch_uses() -> None:
    codes = "00 05 12 13 14 15 25 30 41 43 51 54 55 57 58 59 61 62 63 65 68 91 94 96 N7"
    assert set(RESPONSE_CODES) == set(codes.split())
    assert response_code_meaning("30") == "Format error"
    assert response_code_meaning("XX") == "Unknown response code"


def test_mandatory_fields_per_mti() -> None:
    financial = ("2", "3", "4", "11", "41", "49")
    for mti in ("0100", "0200", "0400", "0420"):
        assert MANDATORY_FIELDS[mti] == financial
    assert set(MANDATORY_FIELDS) <= HANDLED_MTIS


def test_predicates() -> None:
    assert is_request("0100") and is_request("0420") and not is_request("0110")
    assert is_reversal("0400") and is_reversal("0421") and not is_reversal("0100")
    assert is_repeat("0401") and not is_repeat("0400")
    assert original_mti("0421") == "0420" and original_mti("0100") == "0100"
    assert is_refund({"3": "200000"}) and not is_refund({"3": "000000"})
    assert is_ecommerce({"22": "812"}) and is_ecommerce({"25": "59"})
    assert not is_ecommerce({"22": "051", "25": "00"})
