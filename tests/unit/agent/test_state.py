"""AgentState as JSON: every field survives a round trip; a damaged file is a ValueError that
says what is wrong (the key store then names the file and starts from a fresh state,
test_keystore.py), never a crash."""

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


@pytest.mark.parametrize(("text", "reason"), [
    ("", "Expecting value"), ("{", "Expecting property name"), ("[]", "not a JSON object"),
    ("null", "not a JSON object"), ('"text"', "not a JSON object"),
    ("[" * 100_000, "nested too deeply"),
    ('{"failures": "many"}', "failures must be a count"),
    ('{"failures": -1}', "failures must be a count"),
    ('{"failures": true}', "failures must be a count"),
    ('{"renew_at": "tomorrow"}', "renew_at is not an ISO 8601 timestamp"),
    ('{"renew_at": "2027-03-01T12:00:00"}', "renew_at has no time zone"),
    ('{"renew_at": 5}', "renew_at must be a timestamp string"),
    ('{"serial": 12}', "serial must be a string"),
    ('{"health": null}', "health must be a string"),
    ('{"window": []}', "window must be an object with start, end and source"),
    ('{"window": {"start": "2027-03-01T12:00:00+00:00"}}', "window must be an object"),
    ('{"window": {"start": 1, "end": "2027-03-02T12:00:00+00:00", "source": "server"}}',
     "window.start must be a timestamp string"),
    ('{"window": {"start": "2027-03-01T12:00:00+00:00", "end": "2027-03-02T12:00:00+00:00", '
     '"source": "server", "explanation": 7}}', "the window's explanation must be a string"),
])
def test_a_damaged_file_is_refused_with_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        AgentState.from_json(text)
