"""Log masking: PAN 6+4, track/PIN/ICC hidden, CVV2 and CAVV tags hidden, PANs in any text."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

import specs
from switch.cards import luhn_check_digit
from switch.logmask import MaskingFilter, mask_fields

PAN = "4111111111111111"
CAVV = "AAABBEg0VhI0VniQEjRWAAAAAAA="
MESSAGE = {
    "t": "0100",
    "2": PAN,
    "4": "000000001000",
    "14": "3012",
    "35": PAN + "=30121011234567890",
    "45": "B" + PAN + "^DOE/JOHN^3012101123456",
    "52": "0123456789ABCDEF",
    "55": "9F2608A1B2C3D4E5F60708",
    "48": f"C2003123EC00205AV{len(CAVV):03d}{CAVV}",
}
SECRETS = (PAN, "1011234567890", "0123456789ABCDEF", "9F2608A1B2C3D4E5F60708", "C2003123", CAVV)


def _shown(masked: dict[str, str]) -> str:
    return "|".join(masked.values())


def test_with_the_acquirer_spec_everything_sensitive_is_hidden() -> None:
    masked = mask_fields(MESSAGE, specs.load("iso87ascii"))
    assert masked["2"] == "411111******1111"
    assert masked["14"] == "3012"
    assert masked["4"] == "000000001000"
    assert masked["35"].startswith("411111******1111") and set(masked["35"][16:]) == {"*"}
    assert masked["52"] == "*" * 16
    assert masked["48"] == f"C2003***EC00205AV028{'*' * 28}"
    shown = _shown(masked)
    for secret in SECRETS:
        assert secret not in shown


def test_visa_f126_tags_are_masked_by_role() -> None:
    message = {"t": "0100", "2": PAN, "126": f"10031230802050928{CAVV}"}
    masked = mask_fields(message, specs.load("visa"))
    assert masked["126"] == f"1003***0802050928{'*' * 28}"


def test_an_unparsable_ecommerce_field_is_hidden_whole() -> None:
    masked = mask_fields({"48": "C2xx123"}, specs.load("iso87ascii"))
    assert masked["48"] == "*******"


def test_without_a_spec_the_private_fields_are_hidden_whole() -> None:
    masked = mask_fields({**MESSAGE, "126": "1002123"})
    assert masked["2"] == "411111******1111"
    assert masked["48"] == "*" * len(MESSAGE["48"])
    assert masked["126"] == "*******"
    for secret in SECRETS:
        assert secret not in _shown(masked)


def test_a_pan_in_an_unexpected_field_is_masked() -> None:
    masked = mask_fields({"102": PAN, "4": "000000001000"}, specs.load("iso87ascii"))
    assert masked["102"] == "411111******1111"
    assert mask_fields({"102": PAN})["102"] == "411111******1111"


def test_the_callers_message_is_not_changed() -> None:
    message = dict(MESSAGE)
    mask_fields(message, specs.load("iso87ascii"))
    assert message == MESSAGE


@given(st.text("0123456789", min_size=12, max_size=18), st.sampled_from(["2", "34", "102"]))
def test_masking_never_shows_more_than_6_and_4(body: str, field: str) -> None:
    pan = body + luhn_check_digit(body)
    for spec in (None, specs.load("iso87ascii")):
        shown = mask_fields({field: pan}, spec)[field]
        assert sum(c.isdigit() for c in shown) <= 10
        assert shown[:6] == pan[:6] and shown[-4:] == pan[-4:]


def test_filter_masks_pans_in_messages_args_and_exceptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.logmask")
    caplog.handler.addFilter(MaskingFilter())
    with caplog.at_level(logging.INFO, logger="test.logmask"):
        logger.info("card %s declined", PAN)
        logger.info(f"card {PAN}")
        try:
            raise ValueError(f"bad card {PAN}")
        except ValueError:
            logger.exception("failed")
    text = caplog.text
    assert PAN not in text
    assert text.count("411111******1111") == 3
    assert "ValueError: bad card 411111******1111" in text
    assert caplog.records[0].getMessage() == "card 411111******1111 declined"


def test_filter_masks_a_record_whose_arguments_do_not_fit() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "card %d", (PAN,), None)
    assert MaskingFilter().filter(record)
    assert PAN not in record.getMessage() and "411111******1111" in record.getMessage()
