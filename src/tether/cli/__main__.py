"""``python -m tether.cli``: the same as ``tether`` (and ``python -m tether``)."""

from __future__ import annotations

from . import main

main()
