"""SQL for the customer turn's hottest statements, written once per database connection
from the models' metadata and then only executed.

Building a queryset (filters, joins, the compiler) costs more Python than running the
statement it produces: on SQLite, ``Turn.objects.filter(...).update(...)`` of a finished
turn and the history read spent more time in the ORM than in the database. The turn runs
a few of these statements for every customer message, always of the same shape, so their
SQL is built here once per connection (names from ``_meta``, values always as
parameters) and converted back as a queryset would. Everything else uses the ORM.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections

T = TypeVar("T")

# Per connection object (one per thread and alias): what is built may hold its converters,
# which are bound to it.
_BUILT: weakref.WeakKeyDictionary[Any, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def statement_built(key: Hashable, build: Callable[[Any], T]) -> tuple[Any, T]:
    """The default connection of this thread and ``build(connection)``, built on the
    first call for that connection and ``key`` only."""
    wrapper = connections[DEFAULT_DB_ALIAS]
    built = _BUILT.setdefault(wrapper, {})
    if key not in built:
        built[key] = build(wrapper)
    return wrapper, built[key]


def column(wrapper: Any, model: Any, name: str, alias: str = "") -> str:
    """A model field's quoted column (``name`` or its attname), optionally qualified."""
    quoted = wrapper.ops.quote_name(model._meta.get_field(name).column)
    return f"{alias}.{quoted}" if alias else quoted


def table(wrapper: Any, model: Any) -> str:
    return str(wrapper.ops.quote_name(model._meta.db_table))
