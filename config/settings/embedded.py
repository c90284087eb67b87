"""The embedded mode: one process, SQLite, in-process executor, in-memory channel layer."""

from config.settings.base import *  # noqa: F403
