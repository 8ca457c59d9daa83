"""The renewal advisory CLI: advise, list and withdraw on an initialised home; bad input
refused with a message and nothing stored; the audit chain still verifies afterwards."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from conftest import Cli


def advisories(fleetpki: Cli, *args: str) -> list[dict[str, Any]]:
    listed = fleetpki("renewal", "list", "--json", *args)
    assert listed.exit_code == 0, listed.output
    return [json.loads(line) for line in listed.output.splitlines()]


def audit_actions(fleetpki: Cli) -> list[str]:
    entries = fleetpki("audit", "list", "--limit", "1000").output.splitlines()
    return [json.loads(line)["action"] for line in entries]


def test_advise_then_list_shows_it_with_every_field(fleetpki: Cli) -> None:
    before = dt.datetime.now(dt.UTC)
    made = fleetpki("renewal", "advise", "--profile", "sensor", "--end", "7d",
                    "--issued-before", "2020-01-01T00:00", "--explanation",
                    "issuing key moved to the HSM", "--json")
    assert made.exit_code == 0, made.output
    advisory = json.loads(made.output)
    assert advisory["id"].startswith("ra-") and advisory["profile"] == "sensor"
    assert advisory["issued_before"] == "2020-01-01T00:00:00+00:00"  # no offset: UTC
    start = dt.datetime.fromisoformat(advisory["start"])
    end = dt.datetime.fromisoformat(advisory["end"])
    assert before <= start <= dt.datetime.now(dt.UTC)
    assert end - start == dt.timedelta(days=7)
    assert advisory["explanation"] == "issuing key moved to the HSM"
    assert advisory["created_by"].startswith("operator:") and advisory["withdrawn_at"] is None
    assert advisories(fleetpki) == [advisory]
    assert advisories(fleetpki, "--profile", "gateway") == []
    table = fleetpki("renewal", "list").output
    assert advisory["id"] in table and "active" in table
    assert f"{advisory['id']}: issuing key moved to the HSM" in table


def test_an_explanation_is_printed_as_written_never_as_markup(fleetpki: Cli) -> None:
    made = fleetpki("renewal", "advise", "--profile", "sensor", "--end", "1d",
                    "--explanation", "[bold]see ticket [/] #42")
    assert made.exit_code == 0, made.output
    assert "[bold]see ticket [/] #42" in made.output


def test_an_offset_is_honoured_and_a_later_start_is_scheduled(fleetpki: Cli) -> None:
    made = fleetpki("renewal", "advise", "--profile", "gateway", "--start", "2d", "--end",
                    "2099-01-01T00:00:00+02:00", "--explanation", "spread the load")
    assert made.exit_code == 0, made.output
    assert "scheduled" in made.output
    [advisory] = advisories(fleetpki)
    assert advisory["end"] == "2098-12-31T22:00:00+00:00"


def test_refusals_say_why_and_store_nothing(fleetpki: Cli) -> None:
    for args, code, says in [
        (["--profile", "nope", "--end", "7d"], 5, "no profile named 'nope' (profiles: "),
        (["--profile", "sensor", "--start", "2d", "--end", "1d"], 2, "must end after it starts"),
        (["--profile", "sensor", "--end", "2001-01-01T00:00:00Z"], 2, "already passed"),
        (["--profile", "sensor", "--end", "tomorrow"], 2, "--end"),
        (["--profile", "sensor", "--end", "7d", "--start", "soon"], 2, "--start"),
        (["--profile", "sensor", "--end", "7d", "--issued-before", "30d"], 2,
         "after the advisory's end"),
    ]:
        result = fleetpki("renewal", "advise", *args, "--explanation", "why")
        assert result.exit_code == code and says in result.output, (args, result.output)
    empty = fleetpki("renewal", "advise", "--profile", "sensor", "--end", "7d",
                     "--explanation", " ")
    assert empty.exit_code == 2 and "give an explanation" in empty.output
    assert advisories(fleetpki, "--all") == []
    assert "renewal.advised" not in audit_actions(fleetpki)


def test_withdraw_once_and_the_audit_chain_still_verifies(fleetpki: Cli) -> None:
    made = fleetpki("renewal", "advise", "--profile", "sensor", "--end", "3d",
                    "--explanation", "incident 42", "--json")
    advisory_id = json.loads(made.output)["id"]
    withdrawn = fleetpki("renewal", "withdraw", advisory_id)
    assert withdrawn.exit_code == 0 and f"withdrew {advisory_id}" in withdrawn.output
    assert advisories(fleetpki) == []
    [kept] = advisories(fleetpki, "--all")
    assert kept["id"] == advisory_id and kept["withdrawn_at"] is not None
    again = fleetpki("renewal", "withdraw", advisory_id)
    assert again.exit_code == 6 and "already withdrawn" in again.output
    unknown = fleetpki("renewal", "withdraw", "ra-0000000000")
    assert unknown.exit_code == 5 and "renewal list --all" in unknown.output
    assert audit_actions(fleetpki)[-2:] == ["renewal.advised", "renewal.withdrawn"]
    verified = fleetpki("audit", "verify")
    assert verified.exit_code == 0 and "audit log OK" in verified.output, verified.output
