"""Which configured postbacks an occurrence triggers (pure)."""

from __future__ import annotations

from postbackd.model import Trigger
from postbackd.outbound.occurrence import Occurrence

# A new conversion is both "event fired" and "conversion status set".
TRIGGERS_OF = {
    Trigger.SESSION_START: [Trigger.SESSION_START],
    Trigger.FORM_COMPLETE: [Trigger.FORM_COMPLETE],
    Trigger.DISTRIBUTION_COMPLETE: [Trigger.DISTRIBUTION_COMPLETE],
    Trigger.EVENT: [Trigger.EVENT, Trigger.CONVERSION_STATUS],
    Trigger.CONVERSION_STATUS: [Trigger.CONVERSION_STATUS],
    Trigger.MANUAL: [],
}


def matches(postback: dict, occ: Occurrence) -> bool:
    """Scope (campaign, source, goal) and trigger both hold."""
    return _in_scope(postback, occ) and _trigger_holds(postback, occ)


def _in_scope(postback: dict, occ: Occurrence) -> bool:
    if postback.get("campaign_id") and postback["campaign_id"] != occ.campaign_id:
        return False
    if postback.get("source_id") and postback["source_id"] not in occ.source_ids:
        return False
    goal = postback.get("goal")
    return not goal or _event_names(occ) & {goal.lower()} != set()


def _event_names(occ: Occurrence) -> set[str]:
    if not occ.conversion:
        return set()
    names = {occ.conversion["event_id"], *((occ.event or {}).get("aliases") or [])}
    return {n.lower() for n in names}


def _trigger_holds(postback: dict, occ: Occurrence) -> bool:
    kind = Trigger(postback["trigger"])
    if kind not in TRIGGERS_OF[occ.trigger]:
        return False
    if kind is Trigger.EVENT:
        wanted = {e.lower() for e in postback.get("trigger_events") or []}
        return not wanted or bool(_event_names(occ) & wanted)
    if kind is Trigger.CONVERSION_STATUS:
        wanted = {s.lower() for s in postback.get("trigger_statuses") or []}
        return not wanted or (occ.conversion or {}).get("status", "").lower() in wanted
    return True
