"""Standard base64 for the encrypted envelopes: the SIMD ``pybase64`` when it is installed
(the ``encryption`` extra installs it), else the standard library's ``binascii``.

After the cipher, base64 is the largest cost of sealing or opening an item: for a 1 KB item
``binascii`` takes about 1 µs to encode and 3 to 4 µs to decode (strictly), ``pybase64``
about 0.3 and 0.6 (it picks the widest vector instructions the CPU has at import time, and
falls back to plain C on a CPU with none). Both give the same bytes; both refuse anything but
the standard alphabet with its padding. No I/O.

* ``encode(data: bytes) -> bytes``: ``data`` as standard base64 (ASCII, padded, no newline).
* ``decode_strict(text: str) -> bytes``: the bytes of standard base64 ``text``;
  ``binascii.Error`` (a ``ValueError``) for any character outside the alphabet, whitespace
  included, or for wrong padding; ``ValueError`` for text that is not ASCII.
"""

from __future__ import annotations

import binascii
import sys
from collections.abc import Callable

__all__ = ["FAST", "decode_strict", "encode"]

encode: Callable[[bytes], bytes]
decode_strict: Callable[[str], bytes]

try:
    import pybase64
except ImportError:  # pragma: no cover - the encryption extra installs it
    FAST = False

    def encode(data: bytes) -> bytes:
        return binascii.b2a_base64(data, newline=False)

    if sys.version_info >= (3, 11):

        def decode_strict(text: str) -> bytes:
            return binascii.a2b_base64(text, strict_mode=True)

    else:  # strict_mode is new in 3.11; b64decode(validate=True) refuses stray characters
        import base64

        def decode_strict(text: str) -> bytes:
            return base64.b64decode(text, validate=True)

else:
    FAST = True
    encode = pybase64.b64encode

    def decode_strict(text: str) -> bytes:
        return pybase64.b64decode(text, validate=True)
