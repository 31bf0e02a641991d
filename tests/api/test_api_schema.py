"""The OpenAPI 3 document at /api/schema/ describes every call of the contract,
its key, its parameters and its errors; it validates without a warning; the
browsable page at /api/docs/ needs nothing from a CDN."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.core.management import call_command
from django.test import Client

from tests.api.test_api_proposals import CONTRACT_FIELDS

pytestmark = pytest.mark.django_db

ERROR_REF = "#/components/schemas/Error"
CONTRACT = {
    ("/api/v1/actions/", "get"): {400},
    ("/api/v1/actions/", "post"): {400, 403, 409, 413, 415},
    ("/api/v1/actions/{id}/", "get"): {400, 404},
    ("/api/v1/actions/{id}/cancel/", "post"): {404, 409},
    ("/api/v1/actions/{id}/result/", "post"): {400, 404, 409},
    ("/api/v1/me/", "get"): set(),
    ("/api/v1/action-types/", "post"): {400, 403, 413, 415},
}
EVERYWHERE = {401, 429, 503}  # 503: the database connection failed (retry with the same key)


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operation(schema: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return schema["paths"][path][method]


def test_it_serves_an_openapi_3_document_without_a_key():
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(response.content)["openapi"].startswith("3.")


def test_it_lists_every_call_of_the_contract_and_nothing_else(schema):
    documented = {
        (path, method)
        for path, operations in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    }
    assert documented == set(CONTRACT)


@pytest.mark.parametrize(("path", "method"), list(CONTRACT))
def test_it_documents_the_errors_of_each_call_in_the_one_shape(schema, path, method):
    responses = operation(schema, path, method)["responses"]
    for status in CONTRACT[(path, method)] | EVERYWHERE:
        assert str(status) in responses, (path, method, status)
        assert responses[str(status)]["content"]["application/json"]["schema"]["$ref"] == ERROR_REF


@pytest.mark.parametrize(("path", "method"), list(CONTRACT))
def test_it_asks_for_the_agent_key_on_each_call(schema, path, method):
    assert operation(schema, path, method)["security"] == [{"agentKey": []}]


def test_it_describes_the_key_as_a_bearer_token(schema):
    assert schema["components"]["securitySchemes"]["agentKey"] | {"description": ""} == {
        "type": "http",
        "scheme": "bearer",
        "description": "",
    }


def test_it_describes_the_error_shape(schema):
    components = schema["components"]["schemas"]
    assert components["Error"]["required"] == ["error"]
    detail = components[components["Error"]["properties"]["error"]["$ref"].rsplit("/", 1)[1]]
    assert set(detail["properties"]) == {"code", "message", "fields"}
    assert set(detail["required"]) == {"code", "message"}


def test_it_describes_a_proposal_and_its_answers(schema):
    post = operation(schema, "/api/v1/actions/", "post")
    body_ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    proposal = schema["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert set(proposal["properties"]) == {
        "action_type",
        "payload",
        "reasoning",
        "confidence",
        "amount",
        "context",
        "idempotency_key",
        "callback_url",
    }
    assert set(proposal["required"]) == {"action_type", "payload", "reasoning"}
    assert {"201", "200"} <= set(post["responses"])
    headers = [p["name"] for p in post["parameters"] if p["in"] == "header"]
    assert headers == ["Idempotency-Key"]

    action_ref = post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    action = schema["components"]["schemas"][action_ref.rsplit("/", 1)[1]]
    assert set(action["properties"]) >= CONTRACT_FIELDS


def test_it_describes_the_wait_the_status_filter_and_the_result(schema):
    wait = [p for p in operation(schema, "/api/v1/actions/{id}/", "get")["parameters"] if p["name"] == "wait"]
    assert wait and wait[0]["in"] == "query"
    status = [p for p in operation(schema, "/api/v1/actions/", "get")["parameters"] if p["name"] == "status"]
    assert "pending" in status[0]["schema"]["enum"]
    result_ref = operation(schema, "/api/v1/actions/{id}/result/", "post")["requestBody"]["content"][
        "application/json"
    ]["schema"]["$ref"]
    result = schema["components"]["schemas"][result_ref.rsplit("/", 1)[1]]
    assert set(result["properties"]) == {"kind", "outcome", "detail", "undo"}
    assert result["required"] == ["outcome"]


def test_it_validates_without_a_warning(tmp_path: Path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert yaml.safe_load(target.read_text())["info"]["title"] == "Countersign agent API"


def test_it_renders_the_docs_page_from_local_assets_only(asgi_server):
    # Through the real ASGI app: it, not a middleware, serves /static/.
    client = httpx.Client(base_url=asgi_server.url)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets, page[:500]
    # Swagger UI from the sidecar package; its start-up script (/api/docs/?script=) and
    # page styles from this host too, not inline (the Content-Security-Policy).
    assert not [url for url in assets if not url.startswith(("/static/", "/api/docs/?script"))], assets
    assert any(url.startswith("/static/drf_spectacular_sidecar/") for url in assets), assets
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", page), "the page reaches for another host"
    for url in assets:
        served = client.get(url)
        assert served.status_code == 200, url
        assert served.content
