"""Node and hub configuration: validated dataclasses, loaded only here at the edge.

A config file is TOML. Paths to configuration (certificates, keys, the
revocation list) are absolute or relative to the config file's directory; the
store (a SQLite ``database`` path) is absolute or relative to ``state_dir``, which
is itself absolute or relative to the config file and defaults to its directory.
So a config in a read-only ``/etc/yipanqi/node`` keeps its store in a writable
``state_dir = "/var/lib/yipanqi/node"``. Every error names the key and the
problem (``[tls].cert: file not found: ...``); secrets (key file contents) are
never read here, only their paths checked.

Configs are strict: a key or section the dataclasses below do not have is an
error naming it, with the nearest known name (``known_keys`` derives them from
the dataclass fields: a field holding a dataclass, or a tuple or dict of them, is
a section; any other field is a key of the process's own section).
"""

from __future__ import annotations

import dataclasses
import difflib
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ValidationError
from core.identity import Identity
from core.provinces import DEFAULT_REGIONS, PROVINCES


class ConfigError(ValidationError):
    def __init__(self, file: Path, key: str, reason: str) -> None:
        super().__init__(key, reason)
        self.file = file

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


@dataclass(frozen=True)
class TLSPaths:
    ca: Path
    cert: Path
    key: Path
    revoked: Path | None = None  # the federation's revocation list (see certs/revocation.py)


@dataclass(frozen=True)
class SigningPaths:
    cert: Path
    key: Path


@dataclass(frozen=True)
class HubAddress:
    name: str
    address: str

    @property
    def identity(self) -> str:
        return str(Identity.for_hub(self.name))


@dataclass(frozen=True)
class Timing:
    """How long a process waits for what, in seconds: the optional ``[timing]`` section.

    The defaults are production's and rarely need changing; the test launcher
    (tests/support/launcher.py) writes short ones so the tests do not wait out these
    constants. Passed down to the link, the transport, the server and the store at start.
    """

    fallback_recheck_s: float = 20.0  # a session on a fallback hub ends after this, to try the home hub again
    max_backoff_s: float = 10.0  # the longest wait (full jitter) before reconnecting after every hub failed
    revocation_recheck_s: float = 3.0  # an open session checks the hub's certificate against a changed list
    report_every_s: float = 5.0  # a node's signed report (and a regional hub's report) upward
    keepalive_s: float = 20.0  # gRPC keepalive ping interval on every channel and server
    keepalive_timeout_s: float = 10.0  # a ping unanswered this long drops the connection
    ack_flush_s: float = 0.25  # noted acks are written within this (runtime.acks.AckBook)
    online_s: float = 20.0  # the national hub shows a province up while its report is younger
    sweep_s: float = 1.0  # open calls of a client whose certificate was revoked are closed within this
    receipt_alert_s: float = 300.0  # an own change unreceipted this long by a destination: alert, re-send (runtime.receipts)
    # Tests only: this process's wall clock runs this far ahead (negative: behind) of the machine's
    # (runtime.clock), as on a machine whose clock is off; within a day either way.
    clock_offset_s: float = 0.0


PRODUCTION_TIMING = Timing()


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    province: str
    database: str
    listen: str
    tls: TLSPaths
    signing: SigningPaths
    hubs: tuple[HubAddress, ...]
    operator: TLSPaths | None = None
    log_level: str = "info"
    metrics_port: int | None = None
    state_dir: Path | None = None  # where the store lives; None: the config file's directory
    federation_secret: Path | None = None  # person keys' HMAC key (certs/secret.py); required, checked at load
    timing: Timing = PRODUCTION_TIMING

    @property
    def identity(self) -> str:
        return str(Identity.for_province(self.province))


@dataclass(frozen=True)
class HubConfig:
    path: Path
    name: str
    database: str
    listen: str
    tls: TLSPaths
    regions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    guests: dict[str, tuple[str, ...]] = field(default_factory=dict)
    upstream: HubAddress | None = None
    operator: TLSPaths | None = None
    log_level: str = "info"
    metrics_port: int | None = None
    state_dir: Path | None = None  # where the store lives; None: the config file's directory
    federation_secret: Path | None = None  # the national hub's only; a regional hub must not hold it
    timing: Timing = PRODUCTION_TIMING

    @property
    def identity(self) -> str:
        return str(Identity.for_hub(self.name))

    @property
    def national(self) -> bool:
        return self.name == "national"


# Fields that are not keys in the file: where it was read from.
_NOT_KEYS = {"path"}
# Sections whose keys are names chosen by the federation (region names), not fixed keys.
_FREE = object()


def _section_type(hint: Any) -> Any:
    """The dataclass a field's type holds (``X``, ``X | None``, ``tuple[X, ...]``), _FREE for a
    dict, None for a plain value."""
    if dataclasses.is_dataclass(hint):
        return hint
    origin = typing.get_origin(hint)
    if origin is dict:
        return _FREE
    for arg in typing.get_args(hint):
        found = _section_type(arg)
        if found is not None:
            return found
    return None


def known_keys(cls: type) -> tuple[set[str], dict[str, Any]]:
    """(keys of the process's own section, {section: the dataclass its keys come from, or _FREE})."""
    own: set[str] = set()
    sections: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in _NOT_KEYS:
            continue
        kind = _section_type(typing.get_type_hints(cls)[f.name])
        if kind is None:
            own.add(f.name)
        else:
            sections[f.name] = kind
    return own, sections


def _fields(cls: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.name not in _NOT_KEYS}


def _suggest(name: str, known: list[str], shown: dict[str, str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean {shown[close[0]]}?" if close else ""


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.base = path.parent
        try:
            self.data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(path, "file", "not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, "file", f"not valid TOML ({exc})") from None

    def strict(self, cls: type, own_section: str) -> None:
        """Refuse any section or key the config dataclass ``cls`` does not know."""
        own, sections = known_keys(cls)
        own_shown = {k: f"[{own_section}].{k}" for k in own}
        all_shown = {**own_shown, **{s: f"[{s}]" for s in sections}}
        for s, kind in sections.items():  # a name in two sections is shown in the first ([tls] before [operator])
            if kind is not _FREE:
                for k in _fields(kind):
                    all_shown.setdefault(k, f"[{s}].{k}")
        for name, value in self.data.items():
            if name == own_section:
                known, table = own, value
            elif name in sections:
                kind = sections[name]
                if kind is _FREE:
                    continue
                known, table = _fields(kind), value
            else:
                raise self.fail(f"[{name}]", "unknown section" + _suggest(name, [own_section, *sections], all_shown
                                                                          | {own_section: f"[{own_section}]"}))
            for i, t in enumerate(table if isinstance(table, list) else [table]):
                if not isinstance(t, dict):
                    continue  # the section's own reader says what it must be
                where = f"[[{name}]][{i}]" if isinstance(table, list) else f"[{name}]"
                for key in t:
                    if key not in known:
                        near = {k: f"{where}.{k}" for k in known}
                        hint = _suggest(key, sorted(known), near) or _suggest(key, sorted(all_shown), all_shown)
                        raise self.fail(f"{where}.{key}", "unknown key" + hint)

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.path, key, reason)

    @staticmethod
    def key(section: str, key: str) -> str:
        """``[node].listen``; a section given already bracketed (``[[hubs]][0]``, ``[upstream]``) is kept as is."""
        return f"{section if section.startswith('[') else f'[{section}]'}.{key}"

    def table(self, name: str, *, required: bool = True) -> dict[str, Any] | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.fail(f"[{name}]", "missing section")
            return None
        if not isinstance(value, dict):
            raise self.fail(f"[{name}]", "must be a table")
        return value

    def string(self, table: dict[str, Any], section: str, key: str, default: str | None = None) -> str:
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            raise self.fail(self.key(section, key), "missing" if value is None else "must be a non-empty string")
        return value

    def file(self, table: dict[str, Any], section: str, key: str) -> Path:
        path = (self.base / self.string(table, section, key)).resolve()
        if not path.is_file():
            raise self.fail(self.key(section, key), f"file not found: {path}")
        return path

    def address(self, table: dict[str, Any], section: str, key: str) -> str:
        from certs.enrolment import split_address

        value = self.string(table, section, key)
        try:
            split_address(value)
        except ValidationError as err:
            raise self.fail(self.key(section, key), err.reason) from None
        return value

    def state_dir(self, table: dict[str, Any], section: str) -> Path | None:
        if "state_dir" not in table:
            return None
        return (self.base / self.string(table, section, "state_dir")).resolve()

    def database(self, table: dict[str, Any], section: str) -> str:
        value = self.string(table, section, "database")
        if "://" in value:
            if "postgres" in value.split("://")[0] and _has_password(value):
                raise self.fail(self.key(section, "database"),
                                "holds a password: keep it out of the config (a ~/.pgpass file, PGPASSFILE or "
                                "PGPASSWORD in the service's environment; see docs/operations.md)")
            return value
        return f"sqlite:///{((self.state_dir(table, section) or self.base) / value).resolve()}"

    def secret(self, table: dict[str, Any], section: str) -> Path:
        """The federation secret's path, checked now (exists, 0600, 32 bytes) so a bad one stops
        start-up with the key named; the bytes are read again by whoever uses them."""
        from certs.secret import read

        key = self.key(section, "federation_secret")
        if "federation_secret" not in table:
            raise self.fail(key, "missing: the federation secret file (see `yipanqi enrol`), e.g. federation.secret")
        path = (self.base / self.string(table, section, "federation_secret")).resolve()
        try:
            read(path, key)
        except ValidationError as err:
            raise self.fail(key, err.reason) from None
        return path

    def tls(self, section: str, *, required: bool = True) -> TLSPaths | None:
        t = self.table(section, required=required)
        if t is None:
            return None
        revoked = self.file(t, section, "revoked") if "revoked" in t else None
        return TLSPaths(self.file(t, section, "ca"), self.file(t, section, "cert"), self.file(t, section, "key"),
                        revoked)

    def common(self, t: dict[str, Any], section: str) -> tuple[str, int | None]:
        level = t.get("log_level", "info")
        if level not in ("debug", "info", "warning", "error"):
            raise self.fail(f"[{section}].log_level", f"{level!r} is not one of debug, info, warning, error")
        port = t.get("metrics_port")
        if port is not None and (type(port) is not int or not 0 <= port < 65536):
            raise self.fail(f"[{section}].metrics_port", "must be a port number")
        return level, port

    def timing(self) -> Timing:
        """The optional [timing] section: every key a positive number of seconds (unknown keys
        are refused by ``strict``) but ``clock_offset_s``, any number of seconds within a day either
        way; a national hub's ``online_s`` must outlast ``report_every_s``."""
        t = self.table("timing", required=False)
        if t is None:
            return PRODUCTION_TIMING
        values: dict[str, float] = {}
        for key, value in t.items():
            if key == "clock_offset_s":
                if type(value) not in (int, float) or not -86_400 < value < 86_400:
                    raise self.fail("[timing].clock_offset_s",
                                    f"must be a number of seconds within a day either way, not {value!r}")
            elif type(value) not in (int, float) or not 0 < value < 86_400:
                raise self.fail(f"[timing].{key}", f"must be a positive number of seconds (below 86400), not {value!r}")
            values[key] = float(value)
        timing = dataclasses.replace(PRODUCTION_TIMING, **values)
        if timing.online_s <= timing.report_every_s:
            raise self.fail("[timing].online_s", f"must be more than report_every_s ({timing.report_every_s:g}): "
                                                 "every province would show as down between two reports")
        return timing

    def hub_address(self, t: Any, key: str) -> HubAddress:
        if not isinstance(t, dict):
            raise self.fail(key, "must be a table with name and address")
        name = self.string(t, key, "name")
        try:
            Identity.for_hub(name)
        except ValidationError:
            raise self.fail(f"{key}.name", f"unknown hub {name!r}") from None
        return HubAddress(name, self.address(t, key, "address"))


def _has_password(url: str) -> bool:
    from store.db import url_has_password

    return url_has_password(url)


def load_node(path: str | Path) -> NodeConfig:
    r = _Reader(Path(path).resolve())
    n = r.table("node")
    r.strict(NodeConfig, "node")
    assert n is not None
    province = r.string(n, "node", "province")
    if province not in PROVINCES:
        raise r.fail("[node].province", f"unknown province code {province!r}")
    s = r.table("signing")
    assert s is not None
    hubs = r.data.get("hubs")
    if not isinstance(hubs, list) or not hubs:
        raise r.fail("[[hubs]]", "list at least one hub (home first, then fallbacks)")
    level, port = r.common(n, "node")
    tls = r.tls("tls")
    assert tls is not None
    return NodeConfig(
        path=r.path,
        province=province,
        database=r.database(n, "node"),
        listen=r.address(n, "node", "listen"),
        tls=tls,
        signing=SigningPaths(r.file(s, "signing", "cert"), r.file(s, "signing", "key")),
        hubs=tuple(r.hub_address(h, f"[[hubs]][{i}]") for i, h in enumerate(hubs)),
        operator=r.tls("operator", required=False),
        log_level=level,
        metrics_port=port,
        state_dir=r.state_dir(n, "node"),
        federation_secret=r.secret(n, "node"),
        timing=r.timing(),
    )


def _province_lists(r: _Reader, name: str, default: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    t = r.table(name, required=False)
    if t is None:
        return dict(default)
    out = {}
    for region, codes in t.items():
        if not isinstance(codes, list) or not all(isinstance(c, str) and c in PROVINCES for c in codes):
            raise r.fail(f"[{name}].{region}", "must be a list of province codes like \"44\"")
        out[region] = tuple(codes)
    return out


def load_hub(path: str | Path) -> HubConfig:
    r = _Reader(Path(path).resolve())
    h = r.table("hub")
    r.strict(HubConfig, "hub")
    assert h is not None
    name = r.string(h, "hub", "name")
    try:
        Identity.for_hub(name)
    except ValidationError:
        raise r.fail("[hub].name", f"unknown hub {name!r}") from None
    up = r.data.get("upstream")
    if name != "national" and up is None:
        raise r.fail("[upstream]", "a regional hub needs its upstream (the national hub)")
    regions = _province_lists(r, "regions", DEFAULT_REGIONS)
    if name != "national" and name not in regions:
        raise r.fail("[regions]", f"no region for hub {name!r}")
    level, port = r.common(h, "hub")
    if name != "national" and "federation_secret" in h:
        raise r.fail("[hub].federation_secret", "a regional hub must not hold the federation secret "
                                                "(it would let it tell whose record a key is); remove the key and the file")
    secret = r.secret(h, "hub") if name == "national" else None
    tls = r.tls("tls")
    assert tls is not None
    return HubConfig(
        path=r.path,
        name=name,
        database=r.database(h, "hub"),
        listen=r.address(h, "hub", "listen"),
        tls=tls,
        regions=regions,
        guests=_province_lists(r, "guests", {}),
        upstream=r.hub_address(up, "[upstream]") if up is not None else None,
        operator=r.tls("operator", required=False),
        log_level=level,
        metrics_port=port,
        state_dir=r.state_dir(h, "hub"),
        federation_secret=secret,
        timing=r.timing(),
    )


def load_any(path: str | Path) -> NodeConfig | HubConfig:
    """A node's or a hub's config, told apart by its [node] or [hub] section."""
    r = _Reader(Path(path).resolve())
    if "node" in r.data:
        return load_node(path)
    if "hub" in r.data:
        return load_hub(path)
    raise r.fail("file", "neither a [node] nor a [hub] config")


@dataclass(frozen=True)
class SecretTarget:
    """What the federation secret's hand-over needs of a node's or the national hub's config."""

    path: Path  # the config
    identity: str
    tls: TLSPaths  # its certified TLS key signs the request
    secret: Path  # where federation.secret goes: [node|hub].federation_secret, else beside the config


def load_secret_target(path: str | Path) -> SecretTarget:
    """Read a config for ``enrol secret-request`` / ``secret-install``: only the identity, the TLS
    paths and the secret's path, since a process without its secret cannot load the whole config.
    Raises ConfigError naming the key (a regional hub's: it never holds the secret)."""
    from certs.secret import FILE, holds_secret

    r = _Reader(Path(path).resolve())
    section = "node" if "node" in r.data else "hub" if "hub" in r.data else None
    if section is None:
        raise r.fail("file", "neither a [node] nor a [hub] config")
    t = r.table(section)
    assert t is not None
    if section == "node":
        code = r.string(t, "node", "province")
        if code not in PROVINCES:
            raise r.fail("[node].province", f"unknown province code {code!r}")
        identity = str(Identity.for_province(code))
    else:
        name = r.string(t, "hub", "name")
        try:
            identity = str(Identity.for_hub(name))
        except ValidationError:
            raise r.fail("[hub].name", f"unknown hub {name!r}") from None
        if not holds_secret(identity):
            raise r.fail("[hub].name", f"{identity} is a regional hub: it never holds the federation secret "
                                       "(it would let it tell whose record a key is)")
    tls = r.tls("tls")
    assert tls is not None
    secret = (r.base / r.string(t, section, "federation_secret", FILE)).resolve()
    return SecretTarget(r.path, identity, tls, secret)
