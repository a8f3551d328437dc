"""The stored macro context: `build(stored=True)` leaves out what `expand` puts back."""

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbackd import jsontext
from postbackd.model import Trigger
from postbackd.outbound import context, request
from postbackd.outbound.context import ALIASES, BUILT_KEYS, COMPACT, CONVERSION_KEYS
from postbackd.outbound.macros import Escape, render
from postbackd.outbound.occurrence import Occurrence

NOW = datetime(2026, 12, 3, 17, 0, 0, 123456, tzinfo=UTC)
# Field names partners and forms use, and names of columns and aliases a field may shadow.
NAMES = [
    "email",
    "zip_code",
    "state",
    "sub1",
    "revenue",
    "status",
    "cid",
    "clickid",
    "ip",
    "buyer",
    "conversion_id",
    "pid",
    "Email",
    "note",
]
TEXT = st.one_of(st.none(), st.text(max_size=8), st.integers(-5, 5), st.booleans())
LEAD_VALUES = st.fixed_dictionaries(
    {},
    optional={
        k: st.one_of(st.none(), st.text(max_size=6))
        for k in ("sub1", "sub2", "utm_source", "ip", "user_agent", "exto", "buyer", "referrer")
    },
)


def _lead(fields: dict, values: dict, *, created: bool = True) -> dict:
    return {
        "id": "lead_1",
        "org_id": "org_1",
        "campaign_id": "cmp_1",
        "transaction_id": "tx_1",
        "status": "completed",
        "fields": fields,
        "query": {"a": "1"},
        "cookies": {},
        "session_data": {"x": {"y": 2}},
        "cost": Decimal("1.25"),
        "created_at": NOW if created else None,
        **values,
    }


def _conversion(values: dict) -> dict:
    return {
        "id": "cnv_1",
        "event_id": "sale",
        "event_type": "conversion",
        "clid": values.get("clid"),
        "goal": "sale",
        "revenue": Decimal("9.99"),
        "payout": None,
        "currency": None,
        "status": "approved",
        "exto": values.get("exto"),
        "conversion_at": NOW,
    }


@st.composite
def occurrences(draw) -> Occurrence:
    fields = draw(st.dictionaries(st.sampled_from(NAMES), TEXT, max_size=6))
    lead = _lead(fields, draw(LEAD_VALUES))
    trigger = draw(st.sampled_from(list(Trigger)))
    with_conversion = trigger in (Trigger.EVENT, Trigger.CONVERSION_STATUS, Trigger.MANUAL) and (
        draw(st.booleans())
    )
    conversion = _conversion(draw(LEAD_VALUES)) if with_conversion else None
    source = draw(st.one_of(st.none(), st.just({"id": "src_1", "pid": "organic", "name": None})))
    return Occurrence(
        trigger,
        {"id": "org_1"},
        lead,
        source,
        conversion,
        {"name": None} if conversion else None,
        previous_status=draw(st.one_of(st.none(), st.just("pending"))),
        at=NOW,
    )


def _stored(occ: Occurrence) -> tuple[dict, dict]:
    """(what was built, what a worker reads back), both through JSON as on the row."""
    full = jsontext.dumps(context.build(occ, NOW))
    stored = jsontext.dumps(context.build(occ, NOW, stored=True))
    return jsontext.loads(full), context.expand(jsontext.loads(stored))


@settings(suppress_health_check=[HealthCheck.too_slow])  # the first draw warms up
@given(occurrences())
def test_expand_gives_back_every_key_and_value(occ):
    built, expanded = _stored(occ)
    assert expanded == built


@settings(suppress_health_check=[HealthCheck.too_slow])  # the first draw warms up
@given(occurrences())
def test_every_name_renders_the_same(occ):
    built, expanded = _stored(occ)
    names = {*built, *NAMES, *ALIASES, *BUILT_KEYS, *CONVERSION_KEYS, "req.qs.a", "nope"}
    for name in names | {n.upper() for n in names}:
        for escape in (Escape.RAW, Escape.URL):
            assert render(f"{{{name}}}", expanded, escape) == render(
                f"{{{name}}}", built, escape
            ), name


@settings(suppress_health_check=[HealthCheck.too_slow])  # the first draw warms up
@given(occurrences())
def test_the_stored_form_leaves_out_nones_and_derived_aliases(occ):
    stored = context.build(occ, NOW, stored=True)
    built = {*BUILT_KEYS, *(CONVERSION_KEYS if occ.conversion else ())}
    assert not [k for k, v in stored.items() if v is None and k in built]
    fields = occ.lead["fields"] if occ.trigger is not Trigger.SESSION_START else {}
    derived = [a for a in ALIASES if a in stored and a not in fields]
    assert not derived
    assert stored[COMPACT] == (2 if occ.conversion else 1)


def test_a_typical_event_context_is_stored_in_half_the_bytes():
    lead = _lead({"email": "a@example.com", "state": "NY"}, {"sub1": "s1", "utm_source": "nl"})
    occ = Occurrence(
        Trigger.EVENT,
        {"id": "org_1"},
        lead,
        {"id": "src_1", "pid": "organic", "name": "Organic"},
        _conversion({}),
        {"name": "Sale"},
        at=NOW,
    )
    full = len(jsontext.dumps(context.build(occ, NOW)))
    stored = len(jsontext.dumps(context.build(occ, NOW, stored=True)))
    assert stored < full / 2, (stored, full)


def test_a_context_stored_in_full_expands_to_itself():
    """Rows written before compaction carry every key and no marker."""
    occ = Occurrence(Trigger.FORM_COMPLETE, {"id": "org_1"}, _lead({"email": "e"}, {}), at=NOW)
    ctx = jsontext.loads(jsontext.dumps(context.build(occ, NOW)))
    assert context.expand(ctx) == ctx
    assert context.expand(ctx) is not ctx


def test_a_request_renders_the_same_from_either_form():
    occ = Occurrence(
        Trigger.EVENT,
        {"id": "org_1"},
        _lead({"email": "a@example.com"}, {"sub1": "s1"}),
        None,
        _conversion({}),
        None,
        at=NOW,
    )
    ctx = context.build(occ, NOW)
    config = {
        "url": "http://127.0.0.1:9/pb?cid={cid}&click={clickid}&ip={ipaddress}&x={sub2}",
        "method": "POST",
        "fields": {"rev": "{revenue}", "pub": "{publisherrevenue}", "s": "{conversion_status}"},
    }
    full = request.build(config, {}, jsontext.loads(jsontext.dumps(ctx)), "dlv_1", 0)
    stored = jsontext.loads(jsontext.dumps(context.build(occ, NOW, stored=True)))
    assert request.build(config, {}, stored, "dlv_1", 0) == full
    assert sorted(full.missing) == ["ipaddress", "publisherrevenue", "sub2"]
