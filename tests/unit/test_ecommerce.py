"""E-commerce TLV: CVV2, ECI and CAVV read and written by role in each dialect's field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import specs
from switch import ecommerce
from switch.errors import CodecError

ACQ = specs.load("iso87ascii")
VISA = specs.load("visa")
MASTERCARD = specs.load("mastercard")
VALUES = {"cvv2": "123", "eci": "05", "cavv": "AAABBBCCCDDDEEEFFF000111222="}


def test_read_by_role_from_the_acquirer_field() -> None:
    assert ecommerce.read(ACQ, {"48": "C2003123EC00205"}) == {"cvv2": "123", "eci": "05"}


def test_read_ignores_tags_that_are_not_ecommerce() -> None:
    assert ecommerce.read(ACQ, {"48": "ZZ002abC2003123"}) == {"cvv2": "123"}


def test_read_of_a_message_without_the_field_is_empty() -> None:
    assert ecommerce.read(VISA, {"t": "0100"}) == {}


@pytest.mark.parametrize(
    ("spec", "field", "wire"),
    [
        (VISA, "126", "1003123080205"),
        (MASTERCARD, "48", "9203123420205"),
        (ACQ, "48", "C2003123EC00205"),
    ],
)
def test_write_puts_values_in_the_dialects_own_place(
    spec: specs.Spec, field: str, wire: str
) -> None:
    message: dict[str, str] = {"t": "0100"}
    ecommerce.write(spec, message, {"cvv2": "123", "eci": "05"})
    assert message == {"t": "0100", field: wire}


def test_translation_is_write_of_read() -> None:
    acquirer = {"48": "C2003123EC00205"}
    issuer: dict[str, str] = {}
    ecommerce.write(VISA, issuer, ecommerce.read(ACQ, acquirer))
    assert ecommerce.read(VISA, issuer) == {"cvv2": "123", "eci": "05"}


def test_write_keeps_other_tags_and_replaces_ours() -> None:
    message = {"48": "ZZ002abC2003999"}
    ecommerce.write(ACQ, message, {"cvv2": "123"})
    assert message["48"] == "ZZ002abC2003123"


def test_strip_removes_our_tags_and_drops_an_empty_field() -> None:
    kept = {"48": "ZZ002abC2003123"}
    ecommerce.strip(ACQ, kept)
    assert kept == {"48": "ZZ002ab"}
    gone = {"t": "0100", "48": "C2003123"}
    ecommerce.strip(ACQ, gone)
    assert gone == {"t": "0100"}


@pytest.mark.parametrize("data", ["C2", "C20", "C2x03123", "C2009123"])
def test_truncated_tlv_is_a_codec_error_naming_the_field(data: str) -> None:
    with pytest.raises(CodecError, match="field 48") as caught:
        ecommerce.read(ACQ, {"48": data})
    assert caught.value.field == "48"
    with pytest.raises(CodecError, match="field 48"):
        ecommerce.strip(ACQ, {"48": data})


@pytest.mark.parametrize("data", ["C20031234005", "C2003123457009"])
def test_a_misaligned_tlv_error_never_shows_the_bytes_it_took_for_a_tag(data: str) -> None:
    # A CVV2 longer than its length says: its last digits are read as the next tag.
    with pytest.raises(CodecError) as caught:
        ecommerce.read(ACQ, {"48": data})
    assert "45" not in str(caught.value) and "'4" not in str(caught.value)
    assert "offset 8" in str(caught.value)


def test_value_too_long_for_its_length_digits_is_refused() -> None:
    with pytest.raises(CodecError, match="do not fit a 2-digit length"):
        ecommerce.write(VISA, {}, {"cavv": "A" * 100})


def test_mask_secrets_hides_the_cvv2_and_the_cavv_only() -> None:
    assert ecommerce.mask_secrets(ACQ, "C2003123EC00205AV004abcd") == "C2003***EC00205AV004****"
    assert ecommerce.mask_secrets(VISA, "1003123080205") == "1003***080205"


def test_mask_secrets_hides_a_field_it_cannot_parse_whole() -> None:
    assert ecommerce.mask_secrets(ACQ, "C2009123") == "********"


_tlv_value = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)


@given(st.fixed_dictionaries({}, optional={role: _tlv_value for role in ecommerce.ROLES}))
def test_every_dialect_reads_back_what_it_wrote(values: dict[str, str]) -> None:
    for name in specs.available():
        spec = specs.load(name)
        message: dict[str, str] = {}
        ecommerce.write(spec, message, values)
        assert ecommerce.read(spec, message) == {k: v for k, v in values.items() if v}
        assert spec.ecommerce is not None
        field = spec.ecommerce.field
        masked = {field: ecommerce.mask_secrets(spec, message.get(field, ""))}
        for role in ("cvv2", "cavv"):
            assert set(ecommerce.read(spec, masked).get(role, "")) <= {"*"}
