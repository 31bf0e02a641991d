"""The Content-Security-Policy header (django-csp) and the templates it
depends on: no inline script, style or event handler anywhere, so that
nothing but this origin's files can run in a reader's browser.
tests/security/test_browser_csp.py checks the same pages in Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db

TEMPLATES = sorted(Path(settings.BASE_DIR, "templates").rglob("*.html"))
INLINE = {
    "an inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "an inline <style>": re.compile(r"<style\b", re.IGNORECASE),
    "a style attribute": re.compile(r"\sstyle\s*=", re.IGNORECASE),
    "an event handler attribute": re.compile(r"\son[a-z]+\s*=", re.IGNORECASE),
    "an hx-on attribute (evaluated code)": re.compile(r"\shx-on\b", re.IGNORECASE),
    "js: in hx-vals or hx-headers (evaluated code)": re.compile(r"hx-(vals|headers)\s*=\s*['\"]\s*js:", re.IGNORECASE),
}


@pytest.mark.parametrize("path", ["/login/", "/queue/", "/admin/login/", "/api/docs/"])
def test_every_page_carries_a_policy_without_inline_script(client, lead, path):
    client.force_login(lead)
    policy = client.get(path)["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda path: str(path.relative_to(settings.BASE_DIR)))
def test_no_template_needs_what_the_policy_forbids(template):
    text = template.read_text()
    found = [what for what, pattern in INLINE.items() if pattern.search(text)]
    assert found == [], f"{template.name} has {', '.join(found)}: move it to a file under static/."


PYTHON = sorted(
    path
    for app in ("agents", "approvals", "audit")
    for path in Path(settings.BASE_DIR, app).rglob("*.py")
    if "migrations" not in path.parts
)


def test_no_html_built_in_python_needs_what_the_policy_forbids():
    # format_html() and friends in admin displays and views.
    offenders = [
        str(module.relative_to(settings.BASE_DIR))
        for module in PYTHON
        if re.search(r"<[a-z][^>]*\s(style|on[a-z]+)\s*=", text := module.read_text())
        or re.search(r"<script(?![^>]*\bsrc=)", text)
    ]
    assert offenders == [], "these build an inline style, handler or script"


def test_htmx_is_told_not_to_evaluate_code(client, lead):
    client.force_login(lead)
    page = client.get("/queue/").content.decode()
    assert '"allowEval": false' in page and '"includeIndicatorStyles": false' in page
