"""The codec of encryption at rest: sealing / opening one value in its place. No I/O.

Every encrypted value is stored as an *envelope*, a JSON object that takes the place of the
history item, the ``state`` or the ``options`` it encrypts, with one field::

    {"tether_enc": "2:<key id>:<base64 of the 12-byte nonce, then the ciphertext and tag>"}

Format 1, which tether wrote before, is still read (data on disk stays readable)::

    {"tether_enc": 1, "kid": "2026-06", "n": "<nonce, base64>", "c": "<ciphertext, base64>"}

Format 2 packs the same three values into one string: a stored row is then about as cheap
for the store beneath to decode and copy as a plain item (one field, not four), and an
opening decodes one base64 string, not two (base64 costs more than the cipher). The
associated data is the same for both, so converting one to the other changes nothing.

AES-256-GCM (``cryptography``'s ``AESGCM``) with a fresh random 96-bit nonce per encryption.
The associated data binds each ciphertext to its place: the session id, the kind of value
(``item`` / ``state`` / ``options``), an item's ``seq`` and key, and the key id. So a
ciphertext copied into another session, another position or another field, or relabelled
with another key id, fails to decrypt (:class:`~tether.errors.TamperedCiphertext`).

An item's own ``timestamp`` string (which tether takes as its commit time) is also kept in
clear beside the ciphertext, because the store reads it there; on the way out it must equal
the decrypted item's, or the envelope was tampered with.
"""

from __future__ import annotations

import binascii
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import orjson

from . import _base64, _core, _json
from ._core.items import _dumps as encode_new_item
from ._core.items import join_row
from ._encryption_cache import (
    DEFAULT_CACHE_BYTES,
    NO_ROWS,
    WRITTEN_SESSIONS,
    Place,
    Verified,
    VerifiedRow,
    Written,
    entry_size,
    row_size,
)
from ._encryption_keys import _KEY_ID, InvalidTag, Keyring, KeySource, resolve_keys
from .errors import CorruptSession, PlaintextFound, TamperedCiphertext
from .models import KeyedItem

__all__ = [
    "ENVELOPE_MARK",
    "Codec",
    "KeySource",
    "Keyring",
    "encode_item",
    "is_envelope",
    "key_ids_in",
    "prepare_items",
    "resolve_keys",
]

ENVELOPE_MARK = "tether_enc"
"""The key that marks an envelope; its value is the envelope (format 2) or its format (1)."""
_UNKNOWN: Verified = (None, {ENVELOPE_MARK: object()}, b"")
"""The cache's answer for a place it does not hold: equal to no stored value (none holds that
object), so the one comparison of a hit also rules out a miss."""
FORMAT = 2
"""The envelope format written (module doc); format 1 is read too."""
NONCE_BYTES = 12  # 96 bits: GCM's native nonce size, random per encryption
TAG_BYTES = 16  # GCM's authentication tag, at the end of every ciphertext
_AD_PREFIX = b"tether-enc/1\x00"


def encode_item(item: Mapping[str, Any], *, what: str) -> tuple[bytes, str | None]:
    """(the item's JSON, its own timestamp string or None); raises
    :class:`~tether.errors.InvalidSessionData` naming ``what`` if it is not plain JSON."""
    stamp = item.get("timestamp")
    return _json.dumps(item, what=what), stamp if isinstance(stamp, str) else None


def prepare_items(
    items: Iterable[Mapping[str, Any] | KeyedItem],
) -> list[tuple[str | None, bytes, str | None]]:
    """New items checked and encoded as a store checks and encodes them, before any I/O (the
    same errors, the same bytes): ``(key, JSON, own timestamp)`` each, for
    :meth:`Codec.seal_items`."""
    drained = items if type(items) is list else _core.item_list(items)
    out: list[tuple[str | None, bytes, str | None]] = []
    put = out.append
    for offset, item in enumerate(drained):
        if type(item) is not dict:  # a KeyedItem, another Mapping: every check, from the first
            return [
                (key, *encode_item(value, what=f"history item {offset}"))
                for offset, value, key in _core.checked_items(drained)
            ]
        stamp = item.get("timestamp")
        # the store's own encoder: plain JSON (most items) skips the walk for what it cannot hold
        put((None, encode_new_item(item, offset), stamp if isinstance(stamp, str) else None))
    return out


def is_envelope(value: object) -> bool:
    """Whether a stored value is marked as an envelope (it may still be a forged one)."""
    return isinstance(value, dict) and ENVELOPE_MARK in value


def _place(field: str, seq: int) -> str:
    return f"history item seq {seq}" if field == "item" else field


def _out_of_place(session_id: str, seq: object) -> TamperedCiphertext:
    return TamperedCiphertext(
        session_id,
        f"history item seq {seq}",
        "a stored history row is not at its own seq (a whole row copied over another, or "
        "the rows reordered); nothing was returned",
    )


def _b64(data: bytes) -> str:
    return _base64.encode(data).decode("ascii")


class Codec:
    """Seals values into envelopes and opens them, bound to their place.

    It keeps the plaintext of recently opened values (up to ``cache_bytes``), one per place
    (a session's item at a seq, its ``state``, its ``options``): an envelope met again, equal
    to the one verified there (the same ciphertext, nonce, key id, clear timestamp and shape)
    under the same item key, gives the plaintext verified before without decrypting it again
    (a worker reloads the same history turn after turn). Anything else is decrypted and
    verified. The cache lives in the application's memory, which holds the keys anyway (the
    threat model: docs/encryption.md); ``cache_bytes=0`` turns it off.
    """

    def __init__(self, keyring: Keyring, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.keyring = keyring
        self._aead = keyring._aead  # the ring's ciphers by key id, read without its lock
        self._cache: dict[Place, Verified] = {}
        self._rows: dict[str, dict[int, VerifiedRow]] = {}  # session id -> seq -> row
        self._written: dict[str, Written] = {}  # session id -> its latest write: written()
        self._written_bytes = 0  # what the notes hold, bytes of rows and items
        self._row_bytes: dict[str, int] = {}  # what each session's rows cost the cache
        self._cached_bytes = 0
        self._cache_limit = cache_bytes
        self._cache_lock = threading.Lock()

    def _remember(self, place: Place, verified: Verified) -> None:
        """Keep a verified plaintext (in place of what the cache held there); the oldest go
        first past the limit."""
        size = entry_size(verified)
        if size > self._cache_limit:
            return
        with self._cache_lock:
            cache = self._cache
            old = cache.pop(place, None)
            if old is not None:
                self._cached_bytes -= entry_size(old)
            self._make_room(size, keep=None)
            cache[place] = verified
            self._cached_bytes += size

    def _remember_rows(self, session_id: str, verified: Mapping[int, VerifiedRow]) -> None:
        """Keep a session's verified rows (by seq, in place of those the cache held there);
        the values first, then the sessions seen first, go past the limit."""
        sizes = {seq: row_size(row) for seq, row in verified.items()}
        with self._cache_lock:
            rows = self._rows.get(session_id)
            if rows is None:
                rows = self._rows[session_id] = {}
                self._row_bytes[session_id] = 0
            for seq, row in verified.items():
                old = rows.pop(seq, None)
                freed = 0 if old is None else row_size(old)
                self._row_bytes[session_id] -= freed
                self._cached_bytes -= freed
                if not self._make_room(sizes[seq], keep=session_id):
                    return  # this session alone fills the cache: the rest is read again
                rows[seq] = row
                self._row_bytes[session_id] += sizes[seq]
                self._cached_bytes += sizes[seq]

    def _make_room(self, size: int, *, keep: str | None) -> bool:
        """Drop cached entries (values first, then the rows of the sessions seen first, but
        never ``keep``'s) until ``size`` more bytes fit; whether they do. Under the lock."""
        limit = self._cache_limit
        cache, rows = self._cache, self._rows
        while self._cached_bytes + size > limit:
            if cache:
                self._cached_bytes -= entry_size(cache.pop(next(iter(cache))))
                continue
            oldest = next((sid for sid in rows if sid != keep), None)
            if oldest is None:
                return False
            del rows[oldest]
            self._cached_bytes -= self._row_bytes.pop(oldest)
        return True

    # --- associated data ------------------------------------------------------------------

    # orjson directly: every part is a checked id, key, int or name, so the strict encoder's
    # walk for values JSON cannot represent has nothing to find (it is on the hot path).

    @staticmethod
    def _item_ad(session_id: str, seq: int, key: str | None, kid: str) -> bytes:
        return _AD_PREFIX + orjson.dumps(["item", session_id, seq, key, kid])

    @staticmethod
    def _field_ad(session_id: str, field: str, kid: str) -> bytes:
        return _AD_PREFIX + orjson.dumps([field, session_id, kid])

    # --- sealing ----------------------------------------------------------------------------

    def seal_item(
        self, session_id: str, seq: int, key: str | None, item: Mapping[str, Any], *, what: str
    ) -> dict[str, Any]:
        """The envelope of one history item at ``seq`` (with ``key``) of ``session_id``."""
        envelope: dict[str, Any] = self.seal_items(
            session_id, seq, [(key, *encode_item(item, what=what))]
        )[0]
        return envelope

    def seal_items(
        self,
        session_id: str,
        first_seq: int,
        encoded: Sequence[tuple[str | None, bytes, str | None]],
        *,
        keyed: bool = False,
    ) -> list[Any]:
        """The envelopes of items numbered from ``first_seq``, each ``(key, JSON, own
        timestamp)`` as :func:`encode_item` gave it: one cipher and one draw of random nonces
        for the batch (a commit seals its items together). ``keyed``: an item with a key is
        given as a :class:`~tether.KeyedItem` of its envelope, as a store's write takes it."""
        return self._seal(session_id, first_seq, encoded, keyed=keyed, as_json=False)

    def seal_encoded(
        self,
        session_id: str,
        first_seq: int,
        encoded: Sequence[tuple[str | None, bytes, str | None]],
    ) -> _core.EncodedNewItems:
        """:meth:`seal_items` for a store that takes new items already encoded (its
        ``_adds_encoded``): each ``(key, the envelope's JSON, own timestamp)``, the JSON the
        store would make of :meth:`seal_items`' envelope, byte for byte, built here without
        the envelope (a turn's commit: the store then encodes nothing again)."""
        return cast(
            _core.EncodedNewItems,
            self._seal(session_id, first_seq, encoded, keyed=True, as_json=True),
        )

    def _seal(
        self,
        session_id: str,
        first_seq: int,
        encoded: Sequence[tuple[str | None, bytes, str | None]],
        *,
        keyed: bool,
        as_json: bool,
    ) -> list[Any]:
        """:meth:`seal_items` (``as_json`` False) and :meth:`seal_encoded` in one loop: each
        item's envelope sealed, then given as a dict or as its JSON."""
        if not encoded:
            return _core.EncodedNewItems() if as_json else []
        kid = self.keyring.current
        aead = self._aead.get(kid) or self.keyring.aead(
            kid, session_id, f"history item seq {first_seq}"
        )
        encrypt = aead.encrypt
        nonces = os.urandom(NONCE_BYTES * len(encoded))  # one system call, a fresh nonce each
        b64 = _base64.encode  # _b64 and _item_ad inlined: this loop is a commit's cost
        dumps = orjson.dumps
        mark = f"{FORMAT}:{kid}:"
        head = dumps({ENVELOPE_MARK: mark})[:-2]  # the JSON's start: '{"tether_enc":"2:<kid>:'
        out: list[Any] = _core.EncodedNewItems() if as_json else []
        put = out.append
        start = 0
        for seq, (key, data, stamp) in enumerate(encoded, first_seq):
            nonce = nonces[start : start + NONCE_BYTES]
            start += NONCE_BYTES
            ad = _AD_PREFIX + dumps(("item", session_id, seq, key, kid))
            sealed = b64(nonce + encrypt(nonce, data, ad))
            if as_json:  # the store takes an item's own timestamp as its time
                tail = b'"}' if stamp is None else b'","timestamp":' + dumps(stamp) + b"}"
                put((key, b"".join((head, sealed, tail)), stamp))
                continue
            envelope = {ENVELOPE_MARK: mark + sealed.decode("ascii")}
            if stamp is not None:
                envelope["timestamp"] = stamp
            put(envelope if key is None or not keyed else KeyedItem(key, envelope))
        return out

    def seal_field(self, session_id: str, field: str, value: Mapping[str, Any]) -> dict[str, Any]:
        """The envelope of a header field (``state`` / ``options``) of ``session_id``."""
        kid = self.keyring.current
        data = _json.dumps(value, what=field)
        nonce = os.urandom(NONCE_BYTES)
        sealed = self.keyring.aead(kid, session_id, field).encrypt(
            nonce, data, self._field_ad(session_id, field, kid)
        )
        # not remembered here: a write's cost stays its own, and a value read back is
        # remembered when it is first opened
        return {ENVELOPE_MARK: f"{FORMAT}:{kid}:{_b64(nonce + sealed)}"}

    # --- opening ----------------------------------------------------------------------------

    def _open(
        self, envelope: object, session_id: str, field: str, seq: int, key: str | None
    ) -> dict[str, Any]:
        """Open an envelope of ``field`` (``item``: the item at ``seq`` under ``key``): every
        check, the cipher's included (the callers look in the cache first); the plaintext is
        remembered."""
        value, data = self._verify(envelope, session_id, field, seq, key)
        if self._cache_limit:  # every check passed: remember it (a copy: the caller's may change)
            self._remember(
                (session_id, seq if field == "item" else field),
                (key, dict(envelope), data),  # type: ignore[call-overload]
            )
        return value

    def _verify(
        self, envelope: object, session_id: str, field: str, seq: int, key: str | None
    ) -> tuple[dict[str, Any], bytes]:
        """:meth:`_open`'s checks and decryption: (the value, its JSON), nothing remembered."""
        if type(envelope) is not dict or ENVELOPE_MARK not in envelope:
            raise PlaintextFound(
                session_id,
                _place(field, seq),
                "stored in clear where this encrypted store expects a ciphertext; nothing was "
                "returned. If the store was written before encryption was turned on, run "
                "tether rekey --encrypt; otherwise the storage was written to directly",
            )
        mark = envelope[ENVELOPE_MARK]
        kid: object
        packed: object
        if type(mark) is str:  # format 2: "2:<key id>:<base64 of nonce, ciphertext, tag>"
            shown, _, rest = mark.partition(":")
            kid, _, packed = rest.partition(":")
            nonce_text: object = None
            fields, well_formed = 1, shown == "2"
            shown = shown[:16]  # a forged one may be long
        else:  # format 1, as written before
            kid, nonce_text, packed = envelope.get("kid"), envelope.get("n"), envelope.get("c")
            fields, shown = 4, repr(mark)
            well_formed = type(mark) is int and mark == 1
            well_formed = well_formed and type(nonce_text) is str
        extra = len(envelope) - fields
        if (
            not well_formed
            or not (extra == 0 or (extra == 1 and field == "item" and "timestamp" in envelope))
            or type(kid) is not str
            or type(packed) is not str
            or (kid not in self._aead and not _KEY_ID.fullmatch(kid))
        ):
            raise TamperedCiphertext(
                session_id,
                _place(field, seq),
                f"the ciphertext envelope is malformed (fields {sorted(map(str, envelope))}, "
                f"format {shown}); nothing was returned",
                key_id=kid if isinstance(kid, str) else None,
            )
        ad = (
            self._item_ad(session_id, seq, key, kid)
            if field == "item"
            else self._field_ad(session_id, field, kid)
        )
        aead = self._aead.get(kid) or self.keyring.aead(kid, session_id, _place(field, seq))
        try:
            if fields == 1:  # one decode for nonce and ciphertext
                raw = _base64.decode_strict(packed)
                nonce, sealed = raw[:NONCE_BYTES], raw[NONCE_BYTES:]
            else:
                unb64 = _base64.decode_strict
                nonce, sealed = unb64(nonce_text), unb64(packed)  # type: ignore[arg-type]
            data = aead.decrypt(nonce, sealed, ad)
            value = _json.loads(data)
        except (binascii.Error, ValueError, InvalidTag, _json.JSONDecodeError):
            raise TamperedCiphertext(
                session_id,
                _place(field, seq),
                "the ciphertext does not verify: it was altered, or moved here from another "
                "session, item or field; nothing was returned",
                key_id=kid,
            ) from None
        if type(value) is not dict:
            raise TamperedCiphertext(
                session_id,
                _place(field, seq),
                "the decrypted value is not a JSON object",
                key_id=kid,
            )
        if field == "item":
            own = value.get("timestamp")
            if envelope.get("timestamp") != (own if isinstance(own, str) else None):
                raise TamperedCiphertext(
                    session_id,
                    _place(field, seq),
                    "the clear timestamp beside the ciphertext is not the item's own",
                    key_id=kid,
                )
        return value, data

    def open_item(
        self, session_id: str, seq: int, key: str | None, envelope: object
    ) -> dict[str, Any]:
        """The history item an envelope at ``seq`` (with ``key``) of ``session_id`` holds."""
        return self.open_window(session_id, [{"seq": seq, "key": key, "item": envelope}])[0]

    def open_window(
        self, session_id: str, rows: Iterable[Mapping[str, Any]]
    ) -> list[dict[str, Any]]:
        """The history items of a loaded window, in order: each row is a stored history row
        (``{"seq": ..., "key": ... (if any), "item": <envelope>, ...}``).

        What :meth:`_open` gives for each, for a whole window at once: an envelope the cache
        accepts (equal to the one verified at that seq under that item key) costs one lookup
        and one comparison, and all of those are decoded by one JSON parse, not one each; any
        other goes through every check of :meth:`_open`. The seqs must rise row to row: a
        whole stored row copied over another (its envelope verifies at the seq it carries)
        would otherwise be read twice, or out of its order.
        """
        cached = self._cache.get
        hits: list[bytes] = []
        hit = hits.append
        missed: list[tuple[int, dict[str, Any]]] = []  # (position, the item opened)
        previous = -1
        for row in rows:  # the hot loop of a whole-history load: as few steps as it takes
            envelope = row["item"]
            seq = row["seq"]
            if type(seq) is not int or seq <= previous:
                raise _out_of_place(session_id, seq)
            previous = seq
            known = cached((session_id, seq), _UNKNOWN)
            if known[1] == envelope and known[0] == row.get("key"):
                hit(known[2])
            else:
                missed.append(
                    (
                        len(hits) + len(missed),
                        self._open(envelope, session_id, "item", seq, row.get("key")),
                    )
                )
        values: list[dict[str, Any]] = _json.loads(b"[" + b",".join(hits) + b"]") if hits else []
        for position, value in missed:  # in order, so each lands where its row is
            values.insert(position, value)
        return values

    def open_rows(self, session_id: str, rows: Sequence[tuple[int, bytes]]) -> list[bytes]:
        """The rows of a window read undecoded (``(seq, stored JSON)`` each, a store's
        ``_load_raw``), in order, each as the JSON of the same row with its item in clear.

        A row equal byte for byte to the one verified at that seq (:data:`VerifiedRow`)
        costs one lookup and one comparison of bytes; any other is decoded and goes through
        every check of :meth:`_open` (a row that is not a stored history row raises
        :class:`~tether.errors.CorruptSession`, as the store's own decoding would).
        """
        # The hot loop of a whole-history load, as few steps as it takes: a plain loop, faster
        # here than building tuples of the rows' values for one comparison in C (0.66 against
        # 1.6 µs for 10 rows, 117 against 169 µs for 1,000, in a tight loop).
        cached = (self._rows.get(session_id) or NO_ROWS).get
        out: list[bytes] = []
        put = out.append
        verified: dict[int, VerifiedRow] = {}
        for seq, stored in rows:
            entry = cached(seq)
            if entry is not None and entry[0] == stored:
                put(entry[1])
            else:
                clear = self._written_row(session_id, seq, stored) or self._open_row(
                    session_id, seq, stored
                )
                verified[seq] = (bytes(stored), clear)
                put(clear)
        if verified and self._cache_limit:
            self._remember_rows(session_id, verified)
        return out

    def written(
        self,
        session_id: str,
        first_seq: int,
        stored: Sequence[tuple[int, bytes]],
        encoded: Sequence[tuple[str | None, bytes, str | None]],
    ) -> None:
        """Rows sealed here (:meth:`seal_encoded` from ``first_seq`` of the items ``encoded``)
        as the store wrote them (``stored``: ``(seq, row JSON)`` each): the next
        :meth:`open_rows` that meets one of them byte for byte at the seq it was sealed for
        takes its item in clear from ``encoded``, instead of decrypting what was just
        encrypted. One entry: a session's latest write, of the last :data:`WRITTEN_SESSIONS`,
        all of them within a quarter of ``cache_bytes`` (the first written go first)."""
        budget = self._cache_limit // 4
        size = sum(len(row) for _, row in stored) + sum(len(item[1]) for item in encoded)
        if size > budget or len(stored) != len(encoded):
            return
        notes = self._written
        with self._cache_lock:
            old = notes.pop(session_id, None)
            self._written_bytes -= 0 if old is None else old[3]
            while notes and (len(notes) >= WRITTEN_SESSIONS or self._written_bytes + size > budget):
                self._written_bytes -= notes.pop(next(iter(notes)))[3]
            notes[session_id] = (first_seq, stored, encoded, size)
            self._written_bytes += size

    def _written_row(self, session_id: str, seq: int, stored: bytes) -> bytes | None:
        """The clear row of ``stored`` at ``seq`` if it is one :meth:`written` noted (sealed
        for ``seq`` and stored there as given), else None."""
        note = self._written.get(session_id)
        if note is None:
            return None
        first, rows, encoded, _ = note
        offset = seq - first
        if not 0 <= offset < len(rows) or rows[offset] != (seq, stored):
            return None
        cut = stored.find(b',"item":')  # a row's fields hold no such bytes: JSON escapes '"'
        return None if cut < 0 else join_row(stored[:cut] + b"}", encoded[offset][1])

    def holds_rows(self, session_id: str, first: int, last: int) -> bool:
        """Whether the cache seems to hold the rows ``first`` to ``last`` of ``session_id``
        (the first, the last, and as many as that takes; :meth:`known_rows` makes sure)."""
        rows = self._rows.get(session_id)
        return rows is not None and first in rows and last in rows and len(rows) > last - first

    def known_rows(self, session_id: str, first: int, last: int) -> list[bytes] | None:
        """The rows ``first`` to ``last`` of ``session_id`` in clear, in order, as the cache
        holds them (each verified as stored at its seq; :meth:`open_rows`), or None if it
        does not hold every one. The caller knows they are still the stored ones (the
        encrypting store's change mark); nothing here reads or compares."""
        rows = self._rows.get(session_id)
        if rows is None:
            return None
        try:
            return [rows[seq][1] for seq in range(first, last + 1)]
        except KeyError:  # evicted, or never read
            return None

    def _open_row(self, session_id: str, seq: int, stored: bytes) -> bytes:
        """One stored row's JSON with its item in clear, after every check of :meth:`_open`;
        the row must say the ``seq`` it is stored at (a whole row copied over another's
        carries the seq its envelope verifies at)."""
        try:
            row = _json.loads(stored)
        except _json.JSONDecodeError as exc:
            raise CorruptSession(session_id, f"a history item is not valid JSON ({exc})") from None
        if (
            type(row) is not dict
            or type(row.get("seq")) is not int
            or type(row.get("timestamp")) is not str
        ):
            raise CorruptSession(session_id, "a history item cannot be read (not a history row)")
        if row["seq"] != seq:
            raise _out_of_place(session_id, seq)
        # the key as stored, whatever it is: one that is not the sealed one does not verify
        key: Any = row.get("key")
        _, data = self._verify(row.pop("item", None), session_id, "item", row["seq"], key)
        return join_row(orjson.dumps(row), data)

    def open_field(self, session_id: str, field: str, envelope: object) -> dict[str, Any]:
        """The ``state`` / ``options`` an envelope of ``session_id`` holds."""
        known = self._cache.get((session_id, field))
        if known is not None and known[1] == envelope:  # the envelope verified before
            value: dict[str, Any] = _json.loads(known[2])
            return value
        return self._open(envelope, session_id, field, 0, None)

    def open_fields(self, session_id: str, fields: dict[str, Any]) -> None:
        """A header's (or a session's) ``state`` and ``options`` in ``fields`` replaced by
        what their envelopes hold: :meth:`open_field` of each, in one call (every load)."""
        cached = self._cache.get
        for field in ("state", "options"):
            envelope = fields[field]
            known = cached((session_id, field))
            fields[field] = (
                _json.loads(known[2])  # the envelope verified before
                if known is not None and known[1] == envelope
                else self._open(envelope, session_id, field, 0, None)
            )

    @staticmethod
    def key_id_of(value: object) -> str | None:
        """The key id an envelope names (None: not an envelope, or none readable)."""
        if isinstance(value, dict) and ENVELOPE_MARK in value:
            mark = value[ENVELOPE_MARK]
            if isinstance(mark, str):  # format 2
                parts = mark.split(":", 2)
                return parts[1] if len(parts) == 3 else None
            kid = value.get("kid")
            return kid if isinstance(kid, str) else None
        return None


def key_ids_in(values: Iterable[object]) -> set[str | None]:
    """The key ids these stored values name (None for any that is not an envelope)."""
    return {Codec.key_id_of(value) for value in values}
