from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

import specs
from switch import codec, ecommerce
from switch.translate import (
    format_original_data,
    local_answer,
    network_answer,
    parse_original_data,
    reversal_for_issuer,
    rrn_for,
    to_acquirer,
    to_issuer,
    transmission_time,
)

NOW = dt.datetime(2026, 11, 23, 10, 30, 15, tzinfo=dt.UTC)
ACQ = specs.load("iso87ascii")
REQUEST = {
    "t": "0100",
    "2": "4000000000000127",
    "3": "000000",
    "4": "000000001000",
    "7": "1123103000",
    "11": "000042",
    "22": "812",
    "25": "59",
    "41": "TERM0001",
    "42": "SHOP00000000001",
    "49": "933",
    "48": "C2003123EC00205AV004ABCD",
    "52": "0123456789ABCDEF",
}


def test_to_issuer_replaces_stan_time_acquirer_and_rrn() -> None:
    out = to_issuer(
        REQUEST,
        acquirer_spec=ACQ,
        issuer_spec=specs.load("visa"),
        stan="000777",
        rrn="633010000001",
        now=NOW,
        institution_id="400001",
    )
    assert (out["11"], out["7"], out["32"], out["37"]) == (
        "000777",
        "1123103015",
        "400001",
        "633010000001",
    )
    assert "52" not in out  # PIN is translated separately, never copied
    assert REQUEST["11"] == "000042"  # caller's dict untouched


def test_ecommerce_data_moves_to_the_issuer_networks_place() -> None:
    visa = specs.load("visa")
    out = to_issuer(
        REQUEST,
        acquirer_spec=ACQ,
        issuer_spec=visa,
        stan="000001",
        rrn="1",
        now=NOW,
        institution_id="1",
    )
    assert "48" not in out
    assert ecommerce.read(visa, out) == {"cvv2": "123", "eci": "05", "cavv": "ABCD"}
    mc = specs.load("mastercard")
    out = to_issuer(
        REQUEST,
        acquirer_spec=ACQ,
        issuer_spec=mc,
        stan="000001",
        rrn="1",
        now=NOW,
        institution_id="1",
    )
    assert out["48"] == "9203123" + "420205" + "4304ABCD"  # DE 48 subelements 92, 42, 43
    assert ecommerce.read(mc, out) == {"cvv2": "123", "eci": "05", "cavv": "ABCD"}


def test_reversal_carries_issuer_side_original_in_f90() -> None:
    out = to_issuer(
        {**REQUEST, "t": "0400", "90": "0" * 42},
        acquirer_spec=ACQ,
        issuer_spec=specs.load("belkart"),
        stan="000900",
        rrn="R1",
        now=NOW,
        institution_id="400001",
        original=("0100", "000777", "1123103015"),
    )
    assert parse_original_data(out["90"]) == ("0100", "000777", "1123103015", "400001")
    assert "48" not in out and "14" not in out


def test_answer_restores_acquirer_stan_terminal_and_rrn() -> None:
    issuer_answer = {
        "t": "0110",
        "11": "000777",
        "37": "633010000001",
        "38": "A1B2C3",
        "39": "00",
        "41": "TERM0001",
        "4": "000000001000",
    }
    out = to_acquirer(issuer_answer, REQUEST)
    assert out["t"] == "0110"
    assert (out["11"], out["41"], out["38"], out["39"]) == ("000042", "TERM0001", "A1B2C3", "00")
    assert out["37"] == "633010000001"
    assert "2" not in out


def test_declined_answer_has_no_auth_code() -> None:
    out = to_acquirer({"t": "0110", "11": "1", "38": "XXXXXX", "39": "51"}, REQUEST)
    assert "38" not in out and out["39"] == "51"


def test_local_answer_for_repeat_reversal() -> None:
    out = local_answer({"t": "0401", "11": "000001", "41": "T1"}, "25")
    assert out == {"t": "0410", "11": "000001", "41": "T1", "39": "25"}


def test_automatic_reversal_of_issuer_request() -> None:
    issuer_req = to_issuer(
        REQUEST,
        acquirer_spec=ACQ,
        issuer_spec=specs.load("visa"),
        stan="000777",
        rrn="633010000001",
        now=NOW,
        institution_id="400001",
    )
    rev = reversal_for_issuer(issuer_req, stan="000778", now=NOW, institution_id="400001")
    assert rev["t"] == "0400" and rev["11"] == "000778"
    assert rev["90"].startswith("0100000777" + "1123103015")
    assert "126" not in rev and "14" not in rev  # no CVV2/CAVV/expiry in a reversal
    partial = reversal_for_issuer(
        issuer_req, stan="1", now=NOW, institution_id="1", replacement_amount="000000000400"
    )
    assert partial["95"][:12] == "000000000400" and len(partial["95"]) == 42


def test_f90_round_trip_and_rrn_shape() -> None:
    f90 = format_original_data("0200", "123456", "1123103015", "400001")
    assert len(f90) == 42
    assert parse_original_data(f90) == ("0200", "123456", "1123103015", "400001")
    rrn = rrn_for(NOW, 1234567)
    assert len(rrn) == 12 and rrn.isdigit() and rrn.startswith("632710")
    assert transmission_time(NOW) == "1123103015"


_MOSCOW = dt.timezone(dt.timedelta(hours=3))


@given(
    st.lists(
        st.tuples(
            st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1)),
            st.sampled_from([dt.UTC, _MOSCOW]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_f7_and_rrn_caches_give_what_formatting_afresh_gives(
    times: list[tuple[dt.datetime, dt.timezone]],
) -> None:
    # F7 is cached per second and the RRN prefix per hour: any order of
    # calls, any zone, both sides of a boundary, must read as a fresh format.
    for naive, zone in times:
        now = naive.replace(tzinfo=zone)
        utc = now.astimezone(dt.UTC)
        assert transmission_time(now) == utc.strftime("%m%d%H%M%S")
        prefix = f"{utc.year % 10}{utc.timetuple().tm_yday:03d}{utc.hour:02d}"
        assert rrn_for(now, 7) == prefix + "000007"


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("visa", "4111111111111111D30121010000000000000"),  # packed BCD: D
        ("mastercard", "4111111111111111=30121010000000000000"),  # EBCDIC text: =
        ("belkart", "4111111111111111=30121010000000000000"),
    ],
)
@pytest.mark.parametrize("separator", ["=", "D"])
def test_track2_gets_the_separator_the_issuers_encoding_can_carry(
    issuer: str, expected: str, separator: str
) -> None:
    spec = specs.load(issuer)
    request = {
        **REQUEST,
        "2": "4111111111111111",
        "35": f"4111111111111111{separator}30121010000000000000",
    }
    out = to_issuer(
        request,
        acquirer_spec=specs.load("iso87ascii"),
        issuer_spec=spec,
        stan="000077",
        rrn="512345000077",
        now=NOW,
        institution_id="400001",
    )
    assert out["35"] == expected
    assert codec.decode(codec.encode(out, spec), spec)["35"] == expected


def test_an_issuers_echo_and_sign_on_are_acknowledged_and_anything_else_refused() -> None:
    echo = {"t": "0800", "7": "1129120000", "11": "000042", "70": "301"}
    assert network_answer(echo) == {
        "t": "0810",
        "7": "1129120000",
        "11": "000042",
        "39": "00",
        "70": "301",
    }
    assert network_answer(dict(echo, **{"70": "001"}))["39"] == "00"
    assert network_answer(dict(echo, **{"70": "161"}))["39"] == "12"  # an unasked-for key
    assert network_answer(dict(echo, **{"70": "002"}))["39"] == "12"
