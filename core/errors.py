"""One error hierarchy for the whole federation.

Every failure that crosses a boundary is a ``SyncError``. Each carries a gRPC
status hint (by name, so this module imports no gRPC) and whether retrying can
help; the one interceptor in ``node``/``hub`` maps these to status codes.
``LocalError`` is a mistake by our own caller (bad input, unknown record);
``RemoteError`` is something a peer sent us (bad signature, forged origin).
``category`` files a refusal: a quarantine reason reads "<category>: <message>", and the
quarantine metric is labelled by it (runtime.intake, runtime.replica, store.store).
"""

from __future__ import annotations


class SyncError(Exception):
    status = "INTERNAL"
    retryable = False
    category = "error"  # what peers can cause says more (RemoteError's subclasses)

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field

    @property
    def log_text(self) -> str:
        """What a log line may say about this error (the message, unless a subclass knows that
        the message quotes personal data back)."""
        return str(self)


class LocalError(SyncError):
    """Our caller asked for something wrong."""


class RemoteError(SyncError):
    """A peer sent something wrong; quarantine it, keep serving."""

    status = "INVALID_ARGUMENT"


class ValidationError(LocalError):
    """A record field failed validation. Message names the field and reason.

    The message may quote the refused value back to the operator who sent it (``got 'x'``);
    ``rule`` says the same without any value, for logs (``log_text``), which must never carry a
    name, an ID number or a birth date. ``named_by_input``: the field name itself came from the
    input (an unknown key), so logs leave it out too.
    """

    status = "INVALID_ARGUMENT"

    def __init__(self, field: str, reason: str, *, rule: str | None = None, named_by_input: bool = False) -> None:
        super().__init__(f"{field}: {reason}", field=field)
        self.reason = reason
        self.rule = reason if rule is None else rule
        self.named_by_input = named_by_input

    @property
    def log_text(self) -> str:
        return f"{'(a field name from the input)' if self.named_by_input else self.field}: {self.rule}"


class NotFound(LocalError):
    status = "NOT_FOUND"


class KeyUnusable(LocalError):
    """This process's own signing key is revoked or expired: nothing it signs would be accepted."""

    status = "FAILED_PRECONDITION"


class PermissionDenied(SyncError):
    status = "PERMISSION_DENIED"


class Unavailable(SyncError):
    status = "UNAVAILABLE"
    retryable = True


class StoreUnavailable(Unavailable):
    """This process's own database cannot be used right now: the server is down or restarting,
    the file is locked past the busy timeout, the disk is full. Nothing was written; retrying
    later helps. It is never a peer's fault, so it must not be blamed on one.

    ``reason`` is the database's own one-line message; ``database`` names the database (the
    SQLite file, or the server's host and port: never a user name or password), for our own
    logs and start-up errors, not for peers; ``unreachable`` is true when no connection could
    be used at all (so any later successful query shows it is back)."""

    def __init__(self, reason: str, *, unreachable: bool = False, database: str | None = None) -> None:
        super().__init__(f"{reason} ({database})" if database else reason)
        self.reason = reason
        self.database = database
        self.unreachable = unreachable


class BadSignature(RemoteError):
    """The signature does not verify over the exact bytes received."""

    category = "bad signature"


class UnknownAuthor(RemoteError):
    """No valid certificate (chaining to the federation CA) for the key id."""

    category = "unknown author"


class Unauthorised(RemoteError):
    """The author may not write this record."""

    status = "PERMISSION_DENIED"
    category = "unauthorised writer"


class Malformed(RemoteError):
    """The bytes do not decode to a well-formed change."""

    category = "malformed"


class Equivocation(RemoteError):
    """Same origin and sequence number, different content."""

    category = "equivocation"


class AlreadyHeld(LocalError):
    """``person add`` of a person this node already holds, with other values than the record's.

    Names the held record and the differing fields, never their values (so it may be logged)."""

    status = "ALREADY_EXISTS"

    def __init__(self, person_id: str, fields: tuple[str, ...]) -> None:
        super().__init__(
            f"this node already holds this person as {person_id}, and these fields differ from the record: "
            f"{', '.join(fields)}; nothing was written. To change them: "
            f"yipanqi person update -c CONFIG {person_id} --set FIELD=VALUE", field=fields[0] if fields else None)
        self.person_id = person_id
        self.fields = fields
