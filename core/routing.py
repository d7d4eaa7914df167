"""Routing: which replica receives which change. Privacy lives here.

How this works. Every change names the provinces it involves (its routes:
household and residence provinces of every surviving value, plus the provinces
the record involved before the write). A change whose routes are only the
author's own province never leaves the node. Otherwise the author pushes it
to a hub; each hub appends accepted changes to one durable log and indexes
every entry by the provinces it routes to. A subscriber pulls from a hub with
a cursor and gets only the entries its filter admits:

  * a province node P:            entries routed to P, not authored by P;
  * a regional hub R (from the national hub): entries routed to a province R
    serves, that did not come from R;
  * the national hub pulls from no one: regional hubs push every change they
    accepted from their nodes up to it, so it holds every cross-province change.

So within a region a change goes node -> regional hub -> node, and across
regions node -> regional hub -> national hub -> regional hub -> node, and no
node or hub is ever offered an entry that does not involve what it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

from core.identity import Identity

NATIONAL = "national"


@dataclass(frozen=True, slots=True)
class Filter:
    """Which log entries a subscriber may receive."""

    provinces: frozenset[str]
    not_origin: str | None = None  # don't echo a node's own changes back
    not_via: str | None = None  # don't echo a hub's own pushes back

    def admits(self, routes: frozenset[str], origin: str, via: str) -> bool:
        return bool(routes & self.provinces) and origin != self.not_origin and via != self.not_via


@dataclass(frozen=True, slots=True)
class Topology:
    """Regional hubs, the provinces each serves, and guests (nodes that may fall back to it)."""

    regions: Mapping[str, frozenset[str]]
    guests: Mapping[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, regions: Mapping[str, Iterable[str]], guests: Mapping[str, Iterable[str]] | None = None) -> "Topology":
        return cls(
            {r: frozenset(ps) for r, ps in regions.items()},
            {r: frozenset(ps) for r, ps in (guests or {}).items()},
        )

    def region_of(self, province: str) -> str:
        for region, provinces in self.regions.items():
            if province in provinces:
                return region
        raise KeyError(f"province {province} is in no region")

    def served_by(self, hub: str) -> frozenset[str]:
        """Provinces whose changes ``hub`` holds for delivery."""
        if hub == NATIONAL:
            return frozenset().union(*self.regions.values())
        return self.regions.get(hub, frozenset()) | self.guests.get(hub, frozenset())

    def subscription(self, hub: str, subscriber: str) -> Filter | None:
        """The filter for ``subscriber`` pulling from ``hub``; None if it may not pull."""
        ident = Identity.parse(subscriber)
        if ident.role == "province":
            if ident.name in self.served_by(hub):
                return Filter(frozenset({ident.name}), not_origin=subscriber)
            return None
        if ident.role == "hub" and hub == NATIONAL and ident.name in self.regions:
            return Filter(self.served_by(ident.name), not_via=subscriber)
        return None

    def may_push(self, hub: str, pusher: str) -> bool:
        """Nodes push to hubs that serve them; regional hubs push to the national hub."""
        ident = Identity.parse(pusher)
        if ident.role == "province":
            return ident.name in self.served_by(hub)
        return ident.role == "hub" and hub == NATIONAL and ident.name in self.regions


def leaves_node(routes: frozenset[str], province: str) -> bool:
    """Intra-province records never leave their node."""
    return bool(routes - {province})


def pushes_upstream(via: str, upstream: str) -> bool:
    """A regional hub pushes up everything except what came down from upstream."""
    return via != upstream
