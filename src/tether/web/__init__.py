"""``tether serve``: a web inspector and review desk over any store.

:func:`create_app` returns the ASGI app (Starlette) that ``tether serve`` runs with uvicorn;
mount it in your own Starlette or FastAPI app to serve it there. Needs
``pip install 'tether[web]'``. See docs/inspector.md.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
