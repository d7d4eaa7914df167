"""Who is who in the federation: the names bound into certificates.

How this works: every certificate the federation CA issues carries one name,
as its subject CN and as a SAN URI ``yipanqi:<name>``. There are three roles:

* ``province-44``          a province node; the code is one of the 31
                            provincial-level GB/T 2260 codes, plus ``66`` for
                            the Xinjiang Production and Construction Corps.
* ``hub-pearl``            a hub: four regional hubs and ``hub-national``.
* ``operator-44-admin``    a human/tool operator, scoped to a province code,
                            a hub name (``operator-pearl-admin``) or
                            ``national`` (which is also a hub name).

``Identity`` is the parsed form. Parsing is strict (lowercase ASCII only, no
leading zeros, known codes/hubs only) so that one identity has exactly one
spelling, which matters because names are compared as strings in
certificates, key rings and authorisation rules. Pure: no I/O here.
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import dataclass
from typing import Literal

from core.errors import ValidationError
from core.provinces import PROVINCES

Role = Literal["province", "hub", "operator"]

# 31 provincial-level divisions (GB/T 2260) plus 66 for the XPCC; one list
# for the whole federation, kept in core.provinces.
PROVINCE_CODES: frozenset[str] = frozenset(PROVINCES)

# Hub names are fixed by the certificate naming scheme, not by the (overridable)
# province-to-hub layout in core.provinces.
REGIONAL_HUBS: tuple[str, ...] = ("bohai", "yangtze", "pearl", "northwest")
HUBS: tuple[str, ...] = REGIONAL_HUBS + ("national",)

URI_SCHEME = "yipanqi"

# Operator labels may contain inner hyphens; scopes never do, so the first two
# hyphens of "operator-<scope>-<label>" always delimit the scope.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", re.ASCII)


class IdentityError(ValidationError, ValueError):
    """A malformed identity. Also a ValueError so generic parsers can catch it."""

    def __init__(self, reason: str) -> None:
        super().__init__("identity", reason)


@dataclass(frozen=True)
class Identity:
    role: Role
    name: str  # province code "44", hub name "pearl", or operator label
    scope: str | None = None  # operators only: "44" / "pearl" / "national"

    def __post_init__(self) -> None:
        # Validate on construction too, so an Identity in hand is always sound.
        if self.role == "province":
            if self.name not in PROVINCE_CODES:
                raise IdentityError(f"unknown province code {self.name!r}")
            if self.scope is not None:
                raise IdentityError("only operators have a scope")
        elif self.role == "hub":
            if self.name not in HUBS:
                raise IdentityError(f"unknown hub {self.name!r}")
            if self.scope is not None:
                raise IdentityError("only operators have a scope")
        elif self.role == "operator":
            if self.scope is None or (
                self.scope not in PROVINCE_CODES and self.scope not in HUBS
            ):
                raise IdentityError(f"unknown operator scope {self.scope!r}")
            if not isinstance(self.name, str) or not _LABEL.fullmatch(self.name):
                raise IdentityError(
                    f"operator label {self.name!r} must be 1-32 of [a-z0-9-], "
                    "not starting or ending with '-'"
                )
        else:
            raise IdentityError(f"unknown role {self.role!r}")

    # -- constructors -----------------------------------------------------

    @classmethod
    @lru_cache(maxsize=64)  # as parse: few, immutable, and built on hot paths (str(Identity.for_province(c)))
    def for_province(cls, code: str) -> Identity:
        return cls("province", code)

    @classmethod
    @lru_cache(maxsize=16)
    def for_hub(cls, hub: str) -> Identity:
        return cls("hub", hub)

    @classmethod
    def for_operator(cls, scope: str, label: str) -> Identity:
        return cls("operator", label, scope)

    @classmethod
    @lru_cache(maxsize=1024)  # identities are few and immutable; parsing is on the per-change path
    def parse(cls, text: str) -> Identity:
        if not isinstance(text, str):
            raise IdentityError(f"expected str, got {type(text).__name__}")
        role, sep, rest = text.partition("-")
        if not sep or not rest:
            raise IdentityError(f"{text!r} is not <role>-<name>")
        if role == "province":
            return cls("province", rest)
        if role == "hub":
            return cls("hub", rest)
        if role == "operator":
            scope, sep, label = rest.partition("-")
            if not sep:
                raise IdentityError(f"{text!r} is not operator-<scope>-<label>")
            return cls("operator", label, scope)
        raise IdentityError(f"unknown role {role!r} in {text!r}")

    @classmethod
    def parse_uri(cls, uri: str) -> Identity:
        """Parse a SAN URI ``yipanqi:<identity>``."""
        prefix = URI_SCHEME + ":"
        if not isinstance(uri, str) or not uri.startswith(prefix):
            raise IdentityError(f"{uri!r} is not a {prefix}<identity> URI")
        return cls.parse(uri[len(prefix):])

    # -- views ------------------------------------------------------------

    def __str__(self) -> str:
        if self.role == "operator":
            return f"operator-{self.scope}-{self.name}"
        return f"{self.role}-{self.name}"

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}:{self}"

    @property
    def province(self) -> str | None:
        """The province code this identity speaks for, if any."""
        if self.role == "province":
            return self.name
        if self.role == "operator" and self.scope in PROVINCE_CODES:
            return self.scope
        return None

    @property
    def hub(self) -> str | None:
        """The hub this identity is, or operates, if any."""
        if self.role == "hub":
            return self.name
        if self.role == "operator" and self.scope in HUBS:
            return self.scope
        return None
