"""Shared fixtures: configs built in code with port 0, temporary var/ folders."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

# CI machines are small and noisy: no per-example deadlines, fewer examples.
settings.register_profile(
    "ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(autouse=True)
def _keep_root_logging() -> Iterator[None]:
    """Commands invoked in-process (``switch run``, ``switch sim ...``) install their own
    root log handler; put pytest's back so one test's logging never leaks into the next."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
