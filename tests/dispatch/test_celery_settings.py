"""config.celery_settings: Celery reads its options from Django's settings,
each name looked up once, and a changed setting reaches it (override_settings
and pytest-django's `settings` send setting_changed)."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from config.celery import app
from config.celery_settings import DjangoSettings

pytestmark = pytest.mark.embedded


def test_celery_reads_the_django_settings_through_the_remembering_source():
    assert app.conf.task_default_queue == django_settings.CELERY_TASK_DEFAULT_QUEUE  # loads Celery's configuration
    assert app.conf.task_ignore_result is django_settings.CELERY_TASK_IGNORE_RESULT is True
    assert isinstance(app.loader.conf, DjangoSettings)


def test_a_changed_setting_reaches_celery(settings):
    # (Not one a test sets on app.conf itself: Celery's own changes come first.)
    assert app.conf.task_soft_time_limit is None  # Django has no such setting: remembered as absent
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 17
    assert app.conf.task_soft_time_limit == 17
    settings.CELERY_TASK_SOFT_TIME_LIMIT = 18
    assert app.conf.task_soft_time_limit == 18


def test_a_name_is_looked_up_once(monkeypatch):
    source = DjangoSettings()
    looked_up: list[str] = []
    real = type(django_settings).__getattr__

    def counting(self, name):
        looked_up.append(name)
        return real(self, name)

    monkeypatch.setattr(type(django_settings), "__getattr__", counting)
    for _ in range(3):
        assert source.get("CELERY_NOT_A_SETTING") is None
        assert source["CELERY_TASK_DEFAULT_QUEUE"] == django_settings.CELERY_TASK_DEFAULT_QUEUE
    assert looked_up.count("CELERY_NOT_A_SETTING") == 1
