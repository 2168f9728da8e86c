"""Shared fixtures: configs built in code with port 0, temporary var/ folders."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# CI machines are small and noisy: no per-example deadlines, fewer examples.
settings.register_profile(
    "ci", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
