"""schemathesis against the served OpenAPI document: no server error, and every answer
fits the document (status, content type, headers, body schema).

In-process on the real Flask app (WSGI) over a populated SQLite and PostgreSQL database,
with real tokens: the owner household's, an operator's for /operator/..., and now and
then the other role's (to reach the 403s). Half the cases get real ids (the owner's
device, order, notification, the batch) in place of generated ones, so the 200 answers
are checked too and not just the 404s. Cases are generated from the schema (positive)
and against it (negative: wrong types, values out of bounds, missing fields).
"""

from __future__ import annotations

import itertools
import os
import re
from collections import Counter

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis import checks
from schemathesis.generation import GenerationMode
from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from backend.accounts import users as accounts
from backend.storage.models import User
from backend.web import create_app
from tests import api_world
from tests.conftest import DATABASES

# Per operation, per generation mode, per database; REPLENISH_API_FUZZ_EXAMPLES=100 for a
# deeper run by hand (about 5,000 cases per database, a few minutes).
EXAMPLES_PER_MODE = int(os.environ.get("REPLENISH_API_FUZZ_EXAMPLES", "12"))
EXAMPLES_OVER_HTTP = 4

CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_headers_conformance,
          checks.response_schema_conformance, checks.negative_data_rejection,
          checks.ignored_auth]


@pytest.fixture(params=DATABASES)
def world(request, tmp_path) -> api_world.ApiWorld:
    url = (request.getfixturevalue("postgres_server").new_database()
           if request.param == "postgresql" else f"sqlite:///{tmp_path / 'api.db'}")
    return api_world.build(tmp_path, url)


def fresh_token(world: api_world.ApiWorld) -> str:
    """A throwaway token of the owner's user, for DELETE /tokens/current."""
    with world.sessions() as session, session.begin():
        user = session.scalars(select(User).where(User.email == world.owner.email)).one()
        return accounts.issue_user_token(session, user)


def run_schemathesis(world: api_world.ApiWorld, schema, examples: int,
                     base_url: str | None = None) -> Counter:
    """Every operation, positive and negative cases; the answers counted by status."""
    real_ids = {"device_id": world.owner.device_ids[0], "order_id": world.owner.order_ids[0],
                "notification_id": world.owner.notification_ids[0],
                "batch_id": world.batch_id, "index": 1}
    turn = itertools.count()
    ran: Counter = Counter()
    statuses: Counter = Counter()

    def call(case) -> None:
        n = next(turn)
        negative = case.meta.generation.mode is GenerationMode.NEGATIVE
        if case.path_parameters and n % 2 == 0 and not negative:
            case.path_parameters.update(
                {k: v for k, v in real_ids.items() if k in case.path_parameters})
        operator_path = case.operation.path.startswith("/operator/")
        token = world.operator_token if operator_path else world.owner.token
        if n % 7 == 3:  # the other role's token: 403 (or 200 where both may)
            token = world.owner.token if operator_path else world.operator_token
        if case.method == "DELETE" and case.operation.path == "/tokens/current":
            token = fresh_token(world)
        headers = {"Authorization": f"Bearer {token}"}
        if negative and "Authorization" not in (case.headers or {}):
            headers = {}  # a negative case without the header: it must get 401
        response = case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)
        ran[case.operation.label] += 1
        statuses[response.status_code] += 1

    def run(strategy, max_examples: int) -> None:
        hypothesis.settings(
            max_examples=max_examples, database=None, deadline=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )(hypothesis.given(case=strategy)(call))()

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for explicit in schema.get_strategies_from_examples(operation):
            run(explicit, 1)  # the document's examples first: register, then log in
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            run(operation.as_strategy(generation_mode=mode), examples)
    assert set(ran) == {op.label for op in operations}, "every operation was called"
    assert statuses[200] and statuses[201], "real ids and bodies reached the happy paths"
    statuses["cases"], statuses["operations"] = sum(ran.values()), len(ran)
    return statuses


def report(capsys, how: str, statuses: Counter) -> None:
    cases, operations = statuses.pop("cases"), statuses.pop("operations")
    with capsys.disabled():
        print(f"\nschemathesis {how}: {cases} cases over {operations} operations, "
              f"answers by status: {dict(sorted(statuses.items()))}")


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_document(world, capsys):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", world.app)
    report(capsys, "in-process", run_schemathesis(world, schema, EXAMPLES_PER_MODE))


def test_schemathesis_over_http_against_the_running_backend(backend, tmp_path, capsys):
    """The same against `replenish run`'s server (waitress) on loopback, fewer cases."""
    app = create_app(backend.sessions, backend.writer_sessions, backend.settings)
    world = api_world.populate(app, backend.sessions, backend.writer_sessions,
                               backend.keyring, tmp_path)
    base_url = f"http://127.0.0.1:{backend.http_port}/api/v1"
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report(capsys, "over HTTP", run_schemathesis(world, schema, EXAMPLES_OVER_HTTP, base_url))


def test_the_document_is_valid_openapi_3_1():
    from openapi_spec_validator import validate

    app = create_app(sessionmaker())
    validate(app.test_client().get("/api/v1/openapi.json").get_json())


def test_the_document_covers_every_api_route():
    app = create_app(sessionmaker())
    routes = {(method, re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule))
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    documented = {(method.upper(), "/api/v1" + path)
                  for path, item in document["paths"].items() for method in item}
    assert routes == documented
