"""Schemathesis over the app's own OpenAPI document: no request the schema describes (or
violates) may get a 5xx. Runs in-process against the ASGI app on both databases.

Bounded: a few examples per operation and generation mode, derandomized (the same cases
on every run), no shrinking; a failure shows the request as a curl command.
"""

from __future__ import annotations

import time

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FailedHealthCheck, Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from postbackd.api.app import create_app
from tests.helpers import new_lead, setup_campaign

EXAMPLES = {GenerationMode.POSITIVE: 16, GenerationMode.NEGATIVE: 10}
BASE_URL = "http://testserver"


@pytest.fixture
def app(settings, engine):
    return create_app(settings, engine, run_migrations=False)


@pytest.fixture
def fuzz_client(app, org):
    """The app with its lifespan running (writer threads), answering 5xx as responses."""
    with TestClient(app, base_url=BASE_URL, raise_server_exceptions=False) as client:
        client.headers["Authorization"] = f"Bearer {org[1]}"
        client.org_id = org[0]
        yield client


@pytest.fixture
def real_ids(fuzz_client) -> dict[str, str]:
    """Existing objects, so generated cases reach past the 404s now and then."""
    admin = fuzz_client
    cid = setup_campaign(admin)["id"]
    lead = new_lead(admin, cid, email="a@example.com", sub1="s1")
    fired = admin.post(
        f"/api/event/global/{admin.org_id}",
        json={"event_id": "sale_completed", "transaction_id": lead["transaction_id"], "revenue": 5},
    ).json()["data"]
    spare_key = admin.post("/api/v1/api-keys", json={"name": "spare"}).json()["id"]
    return {
        "org_id": admin.org_id,
        "cid": cid,
        "evd_id": admin.get(f"/api/v1/campaigns/{cid}/events").json()["data"][0]["id"],
        "source_id": admin.get(f"/api/v1/campaigns/{cid}/sources").json()["data"][0]["id"],
        "lead_id": lead["lead_id"],
        "conversion_id": fired["conversion_id"],
        "key_id": spare_key,  # revoking it is harmless; the fuzzer's own key stays valid
        "transaction_id": lead["transaction_id"],
    }


def send(client: TestClient, case) -> httpx.Response:
    """The case as schemathesis would send it, through the in-process ASGI client."""
    kw = case.as_transport_kwargs(
        base_url=BASE_URL, headers={"Authorization": client.headers["Authorization"]}
    )
    body = {}
    if "json" in kw:
        body["json"] = kw["json"]
    if "data" in kw:
        data = kw["data"]
        body["content" if isinstance(data, (bytes, str)) else "data"] = data
    if "files" in kw:
        body["files"] = kw["files"]
    headers = {
        k: v.encode() if isinstance(v, str) else v for k, v in (kw.get("headers") or {}).items()
    }
    if kw.get("cookies"):
        headers[b"cookie"] = "; ".join(f"{k}={v}" for k, v in kw["cookies"].items()).encode()
    return client.request(
        kw["method"],
        kw["url"],
        params=kw.get("params"),
        headers=headers,
        follow_redirects=False,
        **body,
    )


def steer(case, data, ids: dict[str, str]) -> None:
    """Sometimes point the case at real objects instead of random ids."""
    for name in list(case.path_parameters or {}):
        if name in ids and data.draw(st.booleans(), label=f"real {name}"):
            case.path_parameters[name] = ids[name]
    for container in (case.body, case.query):
        if isinstance(container, dict) and data.draw(st.booleans(), label="real ids in body/query"):
            for name, real in (("transaction_id", ids["transaction_id"]), ("cid", ids["cid"])):
                if name in container:
                    container[name] = real


def describe(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, BaseExceptionGroup) else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:10])[:1500]


def fuzz(client: TestClient, ids: dict[str, str]) -> tuple[list[str], list[str], int]:
    schema = schemathesis.openapi.from_dict(client.app.openapi())
    failures: list[str] = []
    not_generated: list[str] = []
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode, examples in EXAMPLES.items():

            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
            def run(case, data):
                nonlocal calls
                steer(case, data, ids)
                response = send(client, case)
                calls += 1
                case.validate_response(response, checks=[not_a_server_error])

            label = f"{operation.label} [{mode.value}]"
            try:
                run()
            except (Unsatisfiable, FailedHealthCheck):
                # Nothing in the schema to violate (e.g. a GET without parameters).
                not_generated.append(label)
            except (Exception, BaseExceptionGroup) as exc:  # report, then the next operation
                failures.append(f"{label}: {describe(exc)}")
    return failures, not_generated, calls


def test_no_server_errors_anywhere_in_the_openapi_document(fuzz_client, real_ids):
    started = time.monotonic()
    failures, not_generated, calls = fuzz(fuzz_client, real_ids)
    elapsed = time.monotonic() - started
    assert calls > 100, f"only {calls} requests were sent"
    assert all("[negative]" in label for label in not_generated), not_generated
    print(f"fuzz: {calls} requests in {elapsed:.1f}s; nothing to violate in {not_generated}")
    assert not failures, f"{len(failures)} operation(s) answered 5xx:\n" + "\n".join(failures)
    # The fuzzer's key still works: it revoked only the spare one, if anything.
    assert fuzz_client.get("/api/v1/organization").status_code == 200
