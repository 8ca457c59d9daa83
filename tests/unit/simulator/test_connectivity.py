"""Connectivity windows: daily, at the device's own time, some missed, some long gaps."""

from __future__ import annotations

import datetime as dt
import random

from fleetpki.simulator.connectivity import Connectivity
from fleetpki.simulator.scenario import DAY, Scenario


def links(**changes: object) -> tuple[Scenario, Connectivity]:
    scenario = Scenario(devices=200, **changes)  # type: ignore[arg-type]
    return scenario, Connectivity(scenario, random.Random(7))


def test_a_window_is_the_first_one_at_or_after_the_moment_and_answers_are_stable() -> None:
    scenario, net = links(missed_windows=0.0, offline_share=0.0)
    for device in range(20):
        after = scenario.start + dt.timedelta(hours=device * 7)
        first = net.next_window(device, after)
        assert after <= first < after + DAY
        assert net.next_window(device, after) == first  # no hidden state
        assert net.next_window(device, first) == first
        assert net.next_window(device, first + dt.timedelta(seconds=1)) == first + DAY


def test_missed_windows_come_at_the_scenario_rate() -> None:
    scenario, net = links(missed_windows=0.2, offline_share=0.0)
    gaps = []
    for device in range(200):
        moment = net.next_window(device, scenario.start)
        for _ in range(50):
            following = net.next_window(device, moment + dt.timedelta(seconds=1))
            gaps.append(round((following - moment) / DAY))
            moment = following
    missed = sum(g - 1 for g in gaps) / (sum(g - 1 for g in gaps) + len(gaps))
    assert 0.17 < missed < 0.23


def test_an_offline_stretch_has_no_window() -> None:
    _, net = links(missed_windows=0.0, offline_share=1.0, offline_days=(60, 60))
    for device in range(10):
        device_links = net.devices[device]
        assert device_links.offline_from is not None and device_links.offline_until is not None
        inside = device_links.offline_from + DAY
        assert net.next_window(device, inside) >= device_links.offline_until
        assert device_links.offline_until - device_links.offline_from == 60 * DAY
    assert net.offline_devices() == 200
