"""The throw-away test PKIs the TLS tests share: a fixture factory.

``pki = module_pki()`` in a test module gives its tests a ``pki`` fixture: a CA
with server and client certificates (switch.tls.make_test_pki), made once per
module; ``other_pki = module_pki("rogue")`` an unrelated CA, the rogue party.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from switch.tls import make_test_pki

__all__ = ["module_pki"]


def module_pki(name: str = "switch test") -> Callable[..., dict[str, Path]]:
    """A module-scoped fixture: the paths of a fresh test PKI named ``name``."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
        return make_test_pki(tmp_path_factory.mktemp("pki"), name=name)

    return fixture
