"""When each virtual device can reach the server.

Every device has one window a day at its own time of day; each window is missed with a
fixed probability (decided by a hash of seed, device and day, so that asking twice gives the
same answer and nothing has to be stored per day); a share of the fleet also has one long
offline stretch. Outages of the CA are the network's business (virtual_network.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

from fleetpki.simulator.scenario import DAY, Scenario

_MASK = (1 << 64) - 1


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceLinks:
    offset: dt.timedelta  # time of day of the device's window
    offline_from: dt.datetime | None = None
    offline_until: dt.datetime | None = None


class Connectivity:
    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self._scenario = scenario
        self._miss_threshold = int(scenario.missed_windows * (1 << 64))
        self._seed = scenario.seed & _MASK
        self._origin = scenario.start - scenario.rollout - DAY
        low, high = scenario.offline_days
        devices = []
        for _ in range(scenario.devices):
            offset = dt.timedelta(seconds=rng.randrange(86_400))
            if rng.random() < scenario.offline_share:
                begins = scenario.start + scenario.duration * rng.random()
                devices.append(DeviceLinks(offset, begins,
                                           begins + DAY * rng.randint(low, high)))
            else:
                devices.append(DeviceLinks(offset))
        self.devices = devices

    def next_window(self, device: int, after: dt.datetime) -> dt.datetime:
        """The start of the device's first usable window at or after `after`."""
        links = self.devices[device]
        day = -(-(after - self._origin - links.offset) // DAY)  # ceiling
        day = max(day, 0)
        while True:
            moment = self._origin + links.offset + day * DAY
            if links.offline_from is not None and links.offline_until is not None \
                    and links.offline_from <= moment < links.offline_until:
                day = -(-(links.offline_until - self._origin - links.offset) // DAY)
                continue
            if not self._missed(device, day):
                return moment
            day += 1

    def offline_devices(self) -> int:
        return sum(1 for d in self.devices if d.offline_from is not None)

    def _missed(self, device: int, day: int) -> bool:
        # splitmix64 of (seed, device, day): uniform enough, and the same on every call.
        z = (self._seed * 0x9E3779B97F4A7C15 + device * 0xBF58476D1CE4E5B9 + day) & _MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        z ^= z >> 31
        return z < self._miss_threshold
