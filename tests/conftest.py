"""Shared fixtures: every database test runs on a real SQLite file and on PostgreSQL.

SQLite: migrate a template file once, copy it per test. PostgreSQL: one scratch database
per session (created next to `test`), migrated once, truncated between tests.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from postbackd.api.app import create_app
from postbackd.settings import Settings
from postbackd.store import orgs
from postbackd.store.engine import make_engine, migrate
from postbackd.store.tables import metadata

PG_ADMIN_URL = os.environ.get("POSTBACKD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = os.environ.get("POSTBACKD_TEST_BACKENDS", "sqlite,postgresql").split(",")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return str(path)


@pytest.fixture(scope="session")
def pg_database() -> str:
    name = f"postbackd_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "postbackd.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    engine = make_engine(url, pool_size=1)
    with engine.begin() as conn:
        names = ", ".join(t.name for t in metadata.sorted_tables)
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(db_url) -> Settings:
    return Settings(
        database_url=db_url,
        worker=False,
        allow_loopback_targets=True,
        max_body_bytes=65536,
        secret_key="test-secret",
    )


@pytest.fixture
def client(settings, engine):
    app = create_app(settings, engine, run_migrations=False)
    with TestClient(app) as client:
        yield client


def new_org(engine, name: str = "acme") -> tuple[str, str]:
    with engine.begin() as conn:
        org = orgs.create_org(conn, name)
        _row, key = orgs.create_key(conn, org["id"], "test")
    return org["id"], key


@pytest.fixture
def org(engine) -> tuple[str, str]:
    return new_org(engine)


@pytest.fixture
def admin(client, org):
    """A client whose requests carry the organization's API key."""
    client.headers["Authorization"] = f"Bearer {org[1]}"
    client.org_id = org[0]
    return client


@pytest.fixture
def receiver():
    from tests.receiver import Receiver

    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def live(settings, engine, org):
    """A server with its in-process delivery worker, and the organization's key set."""
    app = create_app(settings.replace(worker=True), engine, run_migrations=False)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {org[1]}"
        client.org_id = org[0]
        yield client
