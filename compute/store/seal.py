"""The seal: a keyed MAC of each event's chain link, with a key the store does not hold.

An event's ``chain`` is sha256 of the previous link and the event: it finds an edit, a removal
or a re-ordering, but anyone who can write the store can also compute it, so an event edited
with the chain recomputed after it, or a forged event appended with a valid link, passes.
The seal is HMAC-SHA256 of the chain under the deployment's seal key, kept beside the NATS
credentials (``var/credentials/seal.key``, mode 0600), never in the store: the mapper seals
every chained event as it is written, the relay refuses to publish an event whose seal or
link does not verify, and ``compute audit --verify`` names it.

One key per deployment, not per host: hosts sharing a store (PostgreSQL) relay and audit each
other's events (one relay at a time holds the lease), and an instance moves between hosts.

Old logs: the key file records ``since``, the store's last notification id when the key was
made. Events up to it were written before seals existed and are checked by their chain only;
every event after it must carry a seal (so a forger cannot pass an event off as old by
leaving the seal out).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from compute.domain.host import host_id
from compute.store.log import read_rows

if TYPE_CHECKING:
    from compute.store.app import ComputeStore

KEY_FILE = "seal.key"


class SealKey(msgspec.Struct, frozen=True):
    key: str
    """hex of 32 random bytes"""
    since: int = 0
    """the store's last notification id when sealing began: events after it must be sealed"""

    def seal(self, chain: str) -> str:
        return seal_of(bytes.fromhex(self.key), chain)


def seal_of(key: bytes, chain: str) -> str:
    """HMAC-SHA256 of a chain value (``hmac.digest``: the one-shot C path, ~1 us)."""
    return hmac.digest(key, chain.encode(), "sha256").hex()


def key_path(credentials: str | Path, explicit: str = "") -> Path:
    """The seal key's file: ``explicit``, else ``seal.key`` in the credentials directory."""
    return Path(explicit) if explicit else Path(credentials) / KEY_FILE


def read_key(path: str | Path) -> SealKey | None:
    """The key at ``path``, or None if there is none (an auditor without it checks chains
    and the stream, not seals)."""
    try:
        return msgspec.json.decode(Path(path).read_bytes(), type=SealKey)
    except FileNotFoundError:
        return None


def load_or_create_key(path: str | Path, store: ComputeStore) -> SealKey:
    """The deployment's key; made on first use (0600, created exclusively so two hosts
    starting together end up with the same one), ``since`` the store's last event."""
    found = read_key(path)
    if found is not None:
        return found
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    made = SealKey(key=secrets.token_hex(32), since=store.recorder.max_notification_id() or 0)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        found = read_key(path)
        assert found is not None
        return found
    with os.fdopen(fd, "wb") as f:
        f.write(msgspec.json.encode(made))
    return made


class SealKeyMismatch(Exception):
    """The store's recent sealed events were sealed with another key than this host's."""


def check_fits(store: ComputeStore, key: SealKey, path: str | Path, recent: int = 50) -> None:
    """Refuse to start with a key the store was not sealed with: a host given a new key on a
    shared store (its own ``var/credentials``) would otherwise refuse, as its relay, every
    other host's event. Among the last ``recent`` sealed events one must verify; if some do
    and one does not, that is a tamper for the relay and the audit to name, not a wrong key."""
    last = store.recorder.max_notification_id() or 0
    rows = read_rows(store, max(last - recent, 0), recent)
    seals = [_sealed.decode(state) for _, _, _, _, state in rows]
    sealed = [x for x in seals if x.seal and x.chain]
    if sealed and not any(hmac.compare_digest(x.seal, key.seal(x.chain)) for x in sealed):
        raise SealKeyMismatch(
            f"the store's events were sealed with another key than {path}: hosts sharing a "
            f"store share its seal key (copy {KEY_FILE} from a host of this deployment)")


def use_key(store: ComputeStore, key: SealKey) -> None:
    """Seal every chained event this store writes from now on (the mapper does it)."""
    store.mapper.seal_key = bytes.fromhex(key.key)     # type: ignore[attr-defined]
    store.seal_key = key                               # type: ignore[attr-defined]


def store_key(store: ComputeStore) -> SealKey | None:
    return getattr(store, "seal_key", None)


def sealed_for_store(key: bytes, event: Any) -> Any:
    """``event`` with its seal set, if it is a chained event (snapshots are not)."""
    if "seal" not in type(event).__struct_fields__ or not event.chain:
        return event
    return msgspec.structs.replace(event, seal=seal_of(key, event.chain))


def aggregate_of(uuid: str, fields: Callable[[str], Any]) -> tuple[str, str]:
    """(kind, id) of an event's aggregate, from its fields (``fields(name)``: None if absent):
    how a refusal or an audit finding names it (an instance's uuid, a host's name...)."""
    if fields("network_id") is not None:
        return "network", str(fields("network_id"))
    if fields("group") is not None:
        return "security group", str(fields("group"))
    host = fields("host")
    if host is not None and uuid == str(host_id(str(host))):
        return "host", str(host)
    return "instance", uuid


class Refusal(msgspec.Struct, frozen=True):
    """An event the relay will not publish, and why."""

    notification: int
    kind: str
    id: str
    version: int
    reason: str

    def __str__(self) -> str:
        return (f"{self.kind} {self.id} v{self.version} (notification {self.notification}): "
                f"{self.reason}")


class _Link(msgspec.Struct):
    chain: str = ""


class _Sealed(msgspec.Struct):
    """What the relay reads of an event to check it (the rest is only hashed)."""

    uuid: str = ""
    version: int = 0
    chain: str = ""
    seal: str = ""


_link = msgspec.json.Decoder(_Link)
_sealed = msgspec.json.Decoder(_Sealed)


def body_of(state: bytes, chain: str, seal: str) -> bytes:
    """The bytes an event's link hashes: its stored JSON with ``"chain":""`` and no seal
    (``compute.domain.event_chain.link`` encodes exactly that; msgspec writes ``seal`` right after
    ``chain``). Done on the bytes, the check costs a few microseconds instead of a decode
    and an encode of the whole event."""
    stored = f'"chain":"{chain}"' + (f',"seal":"{seal}"' if seal else "")
    return state.replace(stored.encode(), b'"chain":""', 1)


class ChainGuard:
    """What the relay checks before it publishes an event: that it links to its aggregate's
    previous event and, with the seal key, that its seal verifies. A store writer without the
    key cannot pass an edited or forged event through it, even with a valid sha256 link, so a
    host restarted on a tampered store does not relay the tamper as genuine.

    The previous event's chain is remembered for the aggregates seen lately (most events
    follow one seen a moment ago), else read from the store."""

    REMEMBER = 10_000

    def __init__(self, store: ComputeStore, key: SealKey | None) -> None:
        self.store = store
        self.key = key
        self.secret = bytes.fromhex(key.key) if key is not None else b""
        self.since = key.since if key is not None else None
        self._heads: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def genuine(self, rows: Sequence[Any]) -> tuple[list[Any], Refusal | None]:
        """The rows up to the first one that does not verify, and the refusal of that one.
        ``rows`` are ``compute.store.log.Row``s."""
        for i, row in enumerate(rows):
            reason = self.check(row)
            if reason is not None:
                return list(rows[:i]), self.refusal(row, reason)
        return list(rows), None

    def check(self, row: Any) -> str | None:
        """None if the event is genuine, else why not."""
        nid, uuid, version, _, state = row
        try:
            event = _sealed.decode(state)
        except Exception as exc:
            return f"unreadable ({exc})"
        if (event.uuid != uuid and not _same_uuid(event.uuid, uuid)) \
                or event.version != version:
            return "its body names another event (moved?)"
        previous = self._previous(uuid, version)
        if previous is None:
            return f"its previous event v{version - 1} is missing"
        legacy = self.since is None or nid <= self.since
        if not event.chain:
            if not legacy or previous:
                return "it has no chain link"
        elif hashlib.sha256(previous.encode() + body_of(state, event.chain, event.seal)
                            ).hexdigest() != event.chain:
            return "it does not match its hash chain (edited, or an earlier event was)"
        elif self.since is not None:
            if not event.seal:
                if not legacy:
                    return "it is not sealed (forged?)"
            elif not hmac.compare_digest(event.seal, seal_of(self.secret, event.chain)):
                return "its seal does not verify (forged, or edited with its chain recomputed)"
        self._remember(uuid, version, event.chain)
        return None

    @staticmethod
    def refusal(row: Any, reason: str) -> Refusal:
        """The refusal of a row, naming its aggregate (kind and id) as the audit does."""
        nid, uuid, version, _, state = row
        try:
            fields = msgspec.json.decode(state)
            kind, ident = aggregate_of(uuid, fields.get)
        except Exception:
            kind, ident = "aggregate", uuid
        return Refusal(nid, kind, ident, version, reason)

    def _previous(self, uuid: str, version: int) -> str | None:
        if version == 1:
            return ""
        head = self._heads.get(uuid)
        if head is not None and head[0] == version - 1:
            return head[1]
        stored = self.store.recorder.select_events(UUID(uuid), gt=version - 2,
                                                   lte=version - 1, limit=1)
        if not stored:
            return None
        return _link.decode(stored[0].state).chain

    def _remember(self, uuid: str, version: int, chain: str) -> None:
        self._heads[uuid] = (version, chain)
        self._heads.move_to_end(uuid)
        if len(self._heads) > self.REMEMBER:
            self._heads.popitem(last=False)


def _same_uuid(a: str, b: str) -> bool:
    try:
        return UUID(a) == UUID(b)
    except ValueError:
        return False
