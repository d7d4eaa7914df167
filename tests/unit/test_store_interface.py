"""The store's interface is documented, and holds no runtime policy (issue 16).

Every public method of ``store.store.Store`` says in its docstring what it returns, raises or
guarantees (the module header says that any of them may raise ``StoreUnavailable``). Acks and
arrival figures are the runtime's (runtime.acks, runtime.stats): the store has no thread, timer
or in-memory queue of its own for them.
"""

from __future__ import annotations

import inspect

from store import store as store_module
from store.store import Store


def _public_methods() -> list[str]:
    return sorted(name for name, member in vars(Store).items()
                  if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, classmethod)))


def test_every_public_store_method_is_documented() -> None:
    names = _public_methods()
    assert len(names) > 30  # reads the real class, not nothing
    bare = [n for n in names if len(inspect.getdoc(getattr(Store, n)) or "") < 20]
    assert bare == [], f"Store methods without a docstring: {bare}"


def test_the_store_module_says_what_every_method_may_raise() -> None:
    assert "StoreUnavailable" in (store_module.__doc__ or "")


def test_acks_and_arrivals_are_not_the_stores() -> None:
    names = set(_public_methods())
    assert not names & {"note_ack", "flush_acks", "recent_arrivals"}
    source = inspect.getsource(store_module)
    assert "threading.Thread" not in source and "deque" not in source
