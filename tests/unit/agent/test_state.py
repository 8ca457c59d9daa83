"""AgentState as JSON: every field survives a round trip; a damaged file gives a fresh state
(the agent then asks the server again) instead of a crash."""

from __future__ import annotations

import json

import pytest

from fleetpki.agent.state import AgentState, Health, Window
from support.agent_fakes import DAY, NOW


def full_state() -> AgentState:
    return AgentState(
        serial="5f3a", window=Window(NOW, NOW + DAY, "server", "key compromise: renew now"),
        renew_at=NOW + DAY / 2, info_next=NOW + DAY, certificate_status="valid",
        next_attempt=NOW + DAY / 4, failures=3, pending_since=NOW - DAY,
        last_error="renewal failed: HTTP 503", last_error_at=NOW, last_renewal_at=NOW - DAY,
        health=Health.needs_reprovisioning)


def test_every_field_survives_a_round_trip() -> None:
    state = full_state()
    assert AgentState.from_json(state.to_json()) == state
    assert AgentState.from_json(AgentState().to_json()) == AgentState()


def test_unknown_fields_from_a_newer_agent_are_ignored() -> None:
    document = json.loads(full_state().to_json())
    document["added_later"] = 1
    assert AgentState.from_json(json.dumps(document)) == full_state()


@pytest.mark.parametrize("text", [
    "", "{", "[]", "null", '"text"',
    '{"failures": "many"}',
    '{"failures": -1}',
    '{"failures": true}',
    '{"renew_at": "tomorrow"}',
    '{"renew_at": "2027-03-01T12:00:00"}',  # no time zone
    '{"renew_at": 5}',
    '{"serial": 12}',
    '{"health": null}',
    '{"window": {"start": "2027-03-01T12:00:00+00:00"}}',
    '{"window": {"start": "2027-03-01T12:00:00+00:00", "end": "2027-03-02T12:00:00+00:00", '
    '"source": "server", "explanation": 7}}',
])
def test_a_damaged_file_gives_a_fresh_state(text: str) -> None:
    assert AgentState.from_json(text) == AgentState()
