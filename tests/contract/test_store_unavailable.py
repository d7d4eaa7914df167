"""The store raises the core's ``Unavailable`` when its database goes away, on every backend.

No SQLAlchemy or driver type leaves the store: every operation raises
``core.errors.StoreUnavailable`` (an ``Unavailable``, retryable), whose message names the
database (the SQLite file, or the PostgreSQL host and port) and never a password, and the
store's health notes the outage. How the database goes away, for real:

* SQLite: the directory holding the file is moved away (a volume unmounted, say) and the store
  then opens a new connection (its pool is reset, as after a lost connection), which cannot
  open the file;
* PostgreSQL: the store's database is dropped with its connections terminated, and a store
  is opened on a port where no server listens.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from core.errors import StoreUnavailable, Unavailable
from store.db import describe
from store.store import Accepted, Store
from tests.contract.test_store import KIND, T0, Authors, accept_all, upsert
from tests.support.pki import PKI


def _goes_away(store: Store, db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Take the store's database away; returns what its errors must name."""
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        (tmp_path / "store.db").parent.rename(tmp_path.parent / f"{tmp_path.name}-gone")
        store.engine.dispose()  # the pooled connection still holds the old file open
        return str(tmp_path / "store.db")
    import sqlalchemy as sa

    admin = request.getfixturevalue("_pg_admin_engine")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{url.database}" WITH (FORCE)'))
    return f"{url.host}:{url.port}" if url.port else str(url.host)


def _must_be_unavailable(err: BaseException, names: str, db_url: str) -> None:
    assert isinstance(err, StoreUnavailable) and isinstance(err, Unavailable), type(err)
    assert err.retryable and err.status == "UNAVAILABLE"
    assert type(err).__module__ == "core.errors"
    assert names in str(err), str(err)
    assert err.database == describe(db_url)
    password = make_url(db_url).password
    if password:
        assert password not in str(err) and password not in err.reason
    assert "\n" not in str(err)


def test_the_store_raises_unavailable_when_its_database_goes_away(db_url: str, pki: PKI, authors: Authors,
                                                                  opened: list[Store], tmp_path: Path,
                                                                  request: pytest.FixtureRequest) -> None:
    _, env = authors.write("province-45", "45", "44")
    accepted: list[Accepted] = accept_all(pki, [env])
    store = Store.open(db_url, owner="province-44")
    opened.append(store)
    store.write_local(KIND, "a-record", upsert(authors.person("44", "44")), operator=None, now_ms=T0,
                      seal=pki.sealer("province-44"))
    assert store.health.ok and store.last_seq() == 1

    names = _goes_away(store, db_url, tmp_path, request)

    attempts = {
        "probe": store.probe,
        "write_local": lambda: store.write_local(KIND, "b-record", upsert(authors.person("44", "44")),
                                                 operator=None, now_ms=T0 + 1, seal=pki.sealer("province-44")),
        "ingest": lambda: store.ingest(accepted, [], via="hub-pearl", now_ms=T0 + 2, cursor=("pull:hub-pearl", 1)),
        "set_cursors": lambda: store.set_cursors({"out:province-45": (3, T0 + 3)}),
        "last_seq": store.last_seq,
        "cursor": lambda: store.cursor("pull:hub-pearl"),
        "get": lambda: store.get(KIND, "a-record"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(StoreUnavailable) as caught:
            attempt()
        _must_be_unavailable(caught.value, names, db_url)
        assert caught.value.unreachable, what
    report = store.health.report()
    assert not report.ok and report.outages == 1 and report.database == describe(db_url)


@pytest.mark.postgres
def test_a_postgresql_store_on_a_port_with_no_server_is_unavailable(fresh_pg_url: str) -> None:
    with socket.socket() as s:  # a free loopback port: nothing listens on it once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = make_url(fresh_pg_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    with pytest.raises(StoreUnavailable) as caught:
        Store.open(url, owner="province-44")
    _must_be_unavailable(caught.value, f"127.0.0.1:{port}", url)
    assert caught.value.unreachable
