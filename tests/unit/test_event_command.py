"""An EventCommand crosses to the SQLite writer process pickled: it must come back equal."""

from __future__ import annotations

import pickle
from datetime import date
from decimal import Decimal

from postbackd.inbound.events import EventCommand, parse_event


def test_every_field_survives_pickling():
    cmd = parse_event(
        {
            "event_id": "sale",
            "transaction_id": "tid-1",
            "cid": "cmp_1",
            "revenue": "12.50",
            "pid": "aff",
            "clid": "c-1",
            "status": "pending",
            "conversion_date": "2026-11-20 10:00:00",
            "conversion_timezone": "PST",
            "sub1": "s1",
            "email": "ada@example.com",
            "tcpa_consent": "1",
            "tcpa_consent_date": "2026-11-01",
            "cost": "2.5",
            "cost_operation": "add",
            "adspend": 7,
            "min_price": "3.25",
        }
    )
    assert all(value not in (None, {}) for value in vars_of(cmd).values())
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(cmd, protocol=protocol))
        assert back == cmd and type(back) is EventCommand
    assert back.tcpa_consent_date == date(2026, 11, 1) and back.revenue == Decimal("12.50")


def test_defaults_survive_pickling():
    cmd = EventCommand(event_id="e", transaction_id="t")
    assert pickle.loads(pickle.dumps(cmd)) == cmd


def vars_of(cmd: EventCommand) -> dict:
    return {name: getattr(cmd, name) for name in EventCommand.__dataclass_fields__}
