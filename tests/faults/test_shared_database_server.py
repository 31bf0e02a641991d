"""Two runs of the suite can share one PostgreSQL server: each has a test
database of its own, so neither creates, flushes, kills or drops the other's."""

from __future__ import annotations

import os

import pytest
from django.db import connection


def test_the_test_database_is_named_for_this_run(db):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite test databases live in memory, one per run already.")
    name = connection.settings_dict["NAME"]
    assert name == os.environ["TEST_DATABASE_NAME"]
    assert name.startswith("test_countersign_") and name != "test_countersign"
