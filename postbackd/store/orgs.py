"""Organizations and their API keys (stored as SHA-256 hashes, shown once)."""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from postbackd import ids
from postbackd.store.rows import as_dict
from postbackd.store.tables import api_keys, organizations, utcnow

KEY_PREFIX = "pbk_"


def hash_key(key: str) -> str:
    # Keys carry 192 random bits, so a fast hash is enough; nothing to brute-force.
    return hashlib.sha256(key.encode()).hexdigest()


def create_org(
    conn: sa.Connection, name: str, timezone: str = "UTC", currency: str = "USD"
) -> dict:
    now = utcnow()
    row = {
        "id": ids.short_org_id(),
        "name": name,
        "timezone": timezone,
        "currency": currency,
        "allowed_targets": [],
        "created_at": now,
        "updated_at": now,
    }
    conn.execute(organizations.insert().values(**row))
    return row


def get_org(conn: sa.Connection, org_id: str) -> dict | None:
    return as_dict(
        conn.execute(sa.select(organizations).where(organizations.c.id == org_id)).first()
    )


def update_org(conn: sa.Connection, org_id: str, values: dict) -> dict | None:
    values = {**values, "updated_at": utcnow()}
    conn.execute(organizations.update().where(organizations.c.id == org_id).values(**values))
    return get_org(conn, org_id)


def create_key(conn: sa.Connection, org_id: str, name: str) -> tuple[dict, str]:
    """Returns (public row, the key itself); only the hash is stored."""
    key = KEY_PREFIX + secrets.token_urlsafe(24)
    row = {
        "id": ids.new_id("api_key"),
        "org_id": org_id,
        "name": name,
        "prefix": key[:12],
        "key_hash": hash_key(key),
        "created_at": utcnow(),
        "revoked_at": None,
    }
    conn.execute(api_keys.insert().values(**row))
    return public_key(row), key


def public_key(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "key_hash"}


def org_for_key(conn: sa.Connection, key: str) -> str | None:
    stmt = sa.select(api_keys.c.org_id).where(
        api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_at.is_(None)
    )
    return conn.execute(stmt).scalar()


def list_keys(conn: sa.Connection, org_id: str) -> list[dict]:
    rows = conn.execute(
        sa.select(api_keys).where(api_keys.c.org_id == org_id).order_by(api_keys.c.id)
    )
    return [public_key(dict(r._mapping)) for r in rows]


def revoke_key(conn: sa.Connection, org_id: str, key_id: str) -> bool:
    stmt = (
        api_keys.update()
        .where(
            api_keys.c.id == key_id, api_keys.c.org_id == org_id, api_keys.c.revoked_at.is_(None)
        )
        .values(revoked_at=utcnow())
    )
    return conn.execute(stmt).rowcount == 1
