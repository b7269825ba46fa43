"""Adapters that put tether under an agent framework's own session interface.

Each adapter is a module of its own with its own extra (``pip install 'tether[<extra>]'``, e.g.
``openai-agents`` for :mod:`tether.integrations.openai_agents`), so importing :mod:`tether`
never imports a framework.
"""
