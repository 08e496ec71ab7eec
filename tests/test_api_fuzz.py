"""Property-based fuzzing of the API from its own OpenAPI description: whatever schemathesis
sends, valid or not, the API never answers 5xx. Bounded to a few examples per operation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.spec import document

from .api_helpers import ApiServer, seeded_api

schema = schemathesis.openapi.from_dict(document())
# Revoking tokens at random would revoke the fuzzer's own; the role matrix tests revocation.
schema = schema.exclude(method="DELETE")


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory, _redis_server: str
) -> Iterator[tuple[ApiServer, str]]:
    home = str(tmp_path_factory.mktemp("fuzz"))
    with pytest.MonkeyPatch.context() as env, seeded_api(env, _redis_server, home) as running:
        server, seeded, _ = running
        yield server, seeded.tokens["admin"]


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_makes_the_api_fail(case: schemathesis.Case, target: tuple) -> None:
    server, token = target
    response = case.call(base_url=server.url(""), headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
