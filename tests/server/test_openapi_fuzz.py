"""Every operation in /openapi.json fuzzed with schemathesis (positive and negative cases), every
request carrying an admin API key and a device token: no answer may be a 5xx (publish/promote/
rollback without signing keys answer 409)."""
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from tests.server.conftest import ADMIN_KEY, register

def test_openapi_document_is_complete(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for p in ("/v1/manifest", "/v1/artefacts/{name}", "/v1/update", "/v1/devices", "/v1/tags",
              "/v1/lookup/{hash_prefix}", "/v1/appeals", "/v1/admin/appeals", "/healthz",
              "/readyz", "/metrics", "/v1/root/{version}.root.json"):
        assert p in paths, p
    assert "deviceToken" in spec["components"]["securitySchemes"]
    html = client.get("/docs/text")
    assert html.status_code == 200 and b"/v1/tags" in html.data and b"<script" not in html.data


def fuzz(app, max_examples: int) -> None:
    device = register(app.test_client())
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    failures, ops = [], 0
    for result in schema.get_all_operations():
        op = result.ok()
        ops += 1
        auth = {"X-API-Key": ADMIN_KEY, **device}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @settings(max_examples=max_examples, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=op.as_strategy(generation_mode=mode))
            def run(case):
                headers = dict(case.headers or {})
                headers.update(auth)                   # every operation, with admin and device credentials
                case.headers = headers
                resp = case.call()
                code = resp.status_code
                if code >= 500:
                    failures.append((op.method, op.path, code, resp.text[:200]))
            try:
                run()
            except Unsatisfiable:
                # nothing to break (e.g. no parameters): no negative case exists
                assert mode is GenerationMode.NEGATIVE, op.path
    assert ops >= 25
    assert failures == [], failures[:5]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)   # the slow one runs both
def test_fuzz_every_operation_no_5xx(make_app):
    fuzz(make_app(ratelimit_enabled=False), max_examples=5)


@pytest.mark.slow
def test_fuzz_every_operation_no_5xx_deeper(make_app):
    fuzz(make_app(ratelimit_enabled=False), max_examples=40)
