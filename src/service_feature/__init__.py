"""Service Feature: an autonomous feature-building platform.

The package is four services (`gateway`, `worker`, `reviewer`, `executor`) over a small shared core
(`config`, `models`, `events`, `lifecycle`, `bus`, `store`, `git`). Services never import each other:
they share the core and talk only through events on the bus.
"""

__version__ = "0.1.0"
