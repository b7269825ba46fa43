"""A support desk whose agent turns run in background workers (see README.md beside this file)."""
