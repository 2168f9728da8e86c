from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from switch.errors import RoutingError
from switch.routing import RouteTable

DEFAULT = [
    ("4", "visa"),
    ("51-55", "mastercard"),
    ("2221-2720", "mastercard"),
    ("50", "mastercard"),
    ("56-69", "mastercard"),
    ("9112", "belkart"),
]


@pytest.mark.parametrize(
    ("pan", "issuer"),
    [
        ("4111111111111111", "visa"),
        ("5555555555554444", "mastercard"),
        ("2221000000000009", "mastercard"),
        ("2720990000000000", "mastercard"),
        ("6759649826438453", "mastercard"),
        ("5000000000000009", "mastercard"),
        ("9112000000000006", "belkart"),
    ],
)
def test_default_routes_send_each_network_to_its_link(pan: str, issuer: str) -> None:
    assert RouteTable(DEFAULT).route(pan) == issuer


def test_longest_prefix_wins_over_shorter_one() -> None:
    table = RouteTable([("4", "visa"), ("411111", "onus"), ("41", "other")])
    assert table.route("4111111111111111") == "onus"
    assert table.route("4122222222222222") == "other"
    assert table.route("4222222222222222") == "visa"


def test_range_is_as_specific_as_its_width() -> None:
    table = RouteTable([("2221-2720", "mastercard"), ("2", "catchall")])
    assert table.route("2500000000000001") == "mastercard"
    assert table.route("2800000000000001") == "catchall"


def test_unknown_bin_raises_routing_error_with_15() -> None:
    with pytest.raises(RoutingError) as info:
        RouteTable(DEFAULT).route("3000000000000004")
    assert info.value.response_code == "15"
    assert "300000" in str(info.value)


def test_first_route_wins_among_equal_lengths() -> None:
    assert RouteTable([("4", "a"), ("4", "b")]).route("4000") == "a"


def test_overlapping_ranges_of_one_width_go_to_the_first_in_the_file() -> None:
    assert RouteTable([("42-48", "a"), ("40-45", "b")]).route("4300") == "a"
    assert RouteTable([("40-45", "b"), ("42-48", "a")]).route("4300") == "b"


def test_bad_route_is_refused() -> None:
    with pytest.raises(ValueError):
        RouteTable([("4x", "visa")])


@given(st.text(max_size=25))
def test_routing_is_total(pan: str) -> None:
    table = RouteTable(DEFAULT)
    try:
        assert table.route(pan) in {"visa", "mastercard", "belkart"}
    except RoutingError:
        assert table.lookup(pan) is None
