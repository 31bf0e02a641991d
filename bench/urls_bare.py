"""The product's URLs plus /bench/bare/ (see bench/bare.py)."""

from __future__ import annotations

from django.urls import include, path

from bench.bare import bare_insert

urlpatterns = [
    path("bench/bare/", bare_insert, name="bench-bare"),
    path("", include("config.urls")),
]
