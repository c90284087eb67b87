"""Django's PostgreSQL backend, with the pool's connection check of config/db_health.py.

Django builds psycopg's pool itself and gives it either psycopg_pool's own check (a round trip
each time a connection is handed out) or none (CONN_HEALTH_CHECKS); the pool has no other way in.
This backend builds the pool as Django does, with Parley's check, before Django would."""

from __future__ import annotations

from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool

from config.db_health import pooled_connection_check


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        options = self.settings_dict["OPTIONS"].get("pool")
        if options and self.alias != base.NO_DB_ALIAS and self.alias not in self._connection_pools:
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # as Django's: it sets the mode it wants later on
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=pooled_connection_check,
                **({} if options is True else options),
            )
            self._connection_pools.setdefault(self.alias, pool)  # as Django's: the first one wins
        return super().pool
