"""The group-commit batch's statements, run on the database driver itself.

Through SQLAlchemy's `Connection.execute` each statement cost about 100 us more than
the query (execution context, parameter processing, the expansion of IN lists for every
call): a third of the writer's time for a batch of a few events, which is what a
batch holds below saturation. Here each is plain SQL built once per dialect and run on
the transaction's own DBAPI connection; values still pass through the type processors
SQLAlchemy would apply (SQLite keeps datetimes as text and booleans as integers), on
SQLite through faster equivalents where there are some (backend/ingest/sqlite_binds.py).

Rows come back as attribute bags, in the same shape BatchLookups used before.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from operator import itemgetter
from types import SimpleNamespace

from sqlalchemy import Table
from sqlalchemy.engine import Dialect

from backend.ingest.sqlite_binds import bind_processor
from backend.orders.lifecycle import OPEN_STATES
from backend.protocol import Kind
from backend.storage.models import (Device, DeviceStatus, Event, Household, Order,
                                    OrderTransition, Product, Release, Slot)


def _result_processor(column, dialect: Dialect):
    """SQLAlchemy's conversion of a stored value (SQLite: datetime text, 0/1 booleans);
    psycopg already returns Python's types (and PostgreSQL's numeric processors would
    need the column's type oid, which a plain cursor does not pass)."""
    if dialect.name == "postgresql":
        return None
    return column.type.dialect_impl(dialect).result_processor(dialect, None)


class _Select:
    def __init__(self, dialect: Dialect, table: Table, columns, where: str,
                 suffix: str = "", sql: str | None = None):
        quote = dialect.identifier_preparer.quote
        self.names = [c.name for c in columns]
        self._processors = [_result_processor(c, dialect) for c in columns]
        self._sql = sql or (f"SELECT {', '.join(quote(n) for n in self.names)} "
                            f"FROM {quote(table.name)} WHERE {where} {suffix}")

    def rows(self, cursor, in_list: str, values: list) -> list[SimpleNamespace]:
        cursor.execute(self._sql.replace("{in}", in_list), values)
        names, processors = self.names, self._processors
        return [SimpleNamespace(**{name: process(value) if process else value
                                   for name, process, value in zip(names, processors, row)})
                for row in cursor.fetchall()]


class _Params:
    """A table's parameters for one row, from a dict of its columns (a missing one is
    NULL). One C-level `itemgetter` over the names, then only the columns that have
    a bind processor: building them column by column was most of the events' INSERT."""

    def __init__(self, columns, dialect: Dialect):
        self.columns = columns
        self._names = [c.name for c in columns]
        self._take = itemgetter(*self._names)
        self._binds = [(i, bind) for i, bind in
                       enumerate(bind_processor(c, dialect) for c in columns) if bind]

    def __call__(self, row: dict) -> list:
        try:
            values = list(self._take(row))
        except KeyError:
            values = [row.get(name) for name in self._names]
        for i, bind in self._binds:
            values[i] = bind(values[i])
        return values


def _bag(names: list[str], values) -> SimpleNamespace:
    return SimpleNamespace(**dict(zip(names, values)))


class _Insert:
    """INSERT of a table's `columns`, run for a list of rows (each a list of the
    columns' values). SQLite runs one row's VALUES per row, in C. PostgreSQL takes two
    rows or more as one statement from one array per column: as one statement per row
    (executemany) an event row cost this process 16 us and PostgreSQL 17, from arrays
    7 and 10 (a loopback measurement, docs/performance.md). A single row still goes as
    VALUES: unnest over the orders table's 26 arrays cost PostgreSQL about twice as
    much for one row."""

    def __init__(self, statements: BatchStatements, table: Table, columns):
        quote = statements._quote
        names = ", ".join(quote(c.name) for c in columns)
        self._postgres = statements._postgres
        self.one_row = (f"INSERT INTO {quote(table.name)} ({names}) "
                        f"VALUES ({', '.join([statements._mark] * len(columns))})")
        arrays = ", ".join(f"%b::{statements.array_type(c)}" for c in columns)
        self._arrays = f"INSERT INTO {quote(table.name)} ({names}) SELECT * FROM unnest({arrays})"

    def run(self, cursor, rows) -> None:
        if not self._postgres:
            cursor.executemany(self.one_row, rows)
            return
        rows = list(rows)
        if len(rows) == 1:
            cursor.execute(self.one_row, rows[0])
        elif rows:
            cursor.execute(self._arrays, [list(column) for column in zip(*rows)])


class BatchStatements:
    """One per dialect (`for_dialect`): the batch path's reads and writes."""

    def __init__(self, dialect: Dialect):
        self._postgres = dialect.name == "postgresql"
        self._dialect = dialect
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        quote = dialect.identifier_preparer.quote
        self._quote = quote
        devices, slots = Device.__table__, Slot.__table__
        households, orders = Household.__table__, Order.__table__
        states = ", ".join(f"'{state}'" for state in OPEN_STATES)  # our constants
        # SQLite's reads (PostgreSQL's: `_joined_reads`).
        self._devices = _Select(dialect, devices, list(devices.c),
                                f"{quote('device_id')} {{in}}", f"ORDER BY {quote('device_id')}")
        self._slots = _Select(dialect, slots, list(slots.c), f"{quote('device_pk')} {{in}}")
        self._households = _Select(dialect, households, list(households.c),
                                   f"{quote('id')} {{in}}")
        products = Product.__table__
        self._products = _Select(dialect, products, list(products.c), f"{quote('sku')} {{in}}")
        # Ascending id: the newest open order wins. On SQLite (no statistics unless
        # ANALYZE ran) a long IN list made the planner read every open order through
        # ix_orders_state; `+state` keeps it on ix_orders_device_slot.
        state = ("+" if dialect.name == "sqlite" else "") + quote("state")
        self._open_orders = _Select(
            dialect, orders, [orders.c.id, orders.c.state, orders.c.device_pk, orders.c.slot_index],
            f"{quote('device_pk')} {{in}} AND {state} IN ({states})",
            f"ORDER BY {quote('id')}")
        events = Event.__table__
        # A batch's sensors' level history (what backend/orders/sensors.py `readings`
        # reads per event): the latest `limit` readings per slot since a time.
        history = [events.c.device_pk, events.c.slot, events.c.received_at, events.c.seq,
                   events.c.remaining]
        names = ", ".join(quote(c.name) for c in history)
        self._history_sql = (
            f"SELECT {names} FROM (SELECT {names}, ROW_NUMBER() OVER (PARTITION BY "
            f"{quote('device_pk')}, {quote('slot')} ORDER BY {quote('received_at')} DESC, "
            f"{quote('seq')} DESC) AS n FROM {quote(events.name)} WHERE {quote('device_pk')} "
            f"{{in}} AND {quote('kind')} = {int(Kind.LEVEL)} AND {quote('received_at')} >= "
            f"{self._mark}) AS h WHERE n <= {self._mark} "
            f"ORDER BY {quote('device_pk')}, {quote('slot')}, {quote('received_at')}, "
            f"{quote('seq')}")
        self._history = _Select(dialect, events, history, "", sql=self._history_sql)
        self._received_at_bind = bind_processor(events.c.received_at, dialect)
        self._insert_events, self._event_params = self._insert(dialect, events)
        self._insert_status, self._status_params = self._insert(dialect, DeviceStatus.__table__)
        self._insert_transitions, self._transition_params = self._insert(
            dialect, OrderTransition.__table__)
        one_order, self._order_params = self._insert(dialect, orders)
        # sqlite3 has lastrowid; psycopg needs RETURNING.
        self._insert_order = one_order.one_row + (
            f" RETURNING {quote('id')}" if self._postgres else "")
        # PostgreSQL: ids taken from the sequence ahead, rows inserted with them.
        self._insert_orders_with_ids = _Insert(self, orders,
                                               [orders.c.id] + self._order_params.columns)
        self._reserve_ids = (f"SELECT nextval(pg_get_serial_sequence('{orders.name}', 'id')) "
                             f"FROM generate_series(1, {self._mark})")
        # Models with an active release: most batches' heartbeats have none to offer,
        # and the ORM read of a model's releases was a fifth of a small batch's CPU.
        self._active_models = (f"SELECT DISTINCT {quote('model')} FROM "
                               f"{quote(Release.__table__.name)} WHERE {quote('state')} = "
                               f"'active'")
        self._device_binds = {c.name: bind_processor(c, dialect) for c in devices.c}
        self._device_arrays = {c.name: self.array_type(c) for c in devices.c}
        self._updates: dict[tuple[str, ...], str] = {}
        if self._postgres:
            self._joined_reads(dialect, devices, households, slots, orders, states)

    def _joined_reads(self, dialect: Dialect, devices, households, slots, orders,
                      states: str) -> None:
        """PostgreSQL: the rows read by a key of the row before come with it, a device's
        household and a slot's newest open order. Each statement costs PostgreSQL about
        60 us of CPU and this process 70 (docs/performance.md), SQLite's hardly anything.
        The LATERAL subqueries (OFFSET 0, LIMIT 1: never flattened into a join) run per
        row on the primary key and ix_orders_device_slot: as plain joins they were
        planned as a scan of every household and every open order."""
        quote = dialect.identifier_preparer.quote

        def columns(alias: str, table: Table) -> str:
            return ", ".join(f"{alias}.{quote(c.name)}" for c in table.c)

        self._device_names = [c.name for c in devices.c]
        self._household_names = [c.name for c in households.c]
        self._slot_names = [c.name for c in slots.c]
        # Sorted: row locks taken in one order by every writer (FOR UPDATE OF d: the
        # households stay unlocked).
        self._devices_households = (
            f"SELECT {columns('d', devices)}, {columns('h', households)} "
            f"FROM {quote(devices.name)} AS d LEFT JOIN LATERAL (SELECT "
            f"{columns('h', households)} FROM {quote(households.name)} AS h WHERE "
            f"h.{quote('id')} = d.{quote('household_id')} OFFSET 0) AS h ON true "
            f"WHERE d.{quote('device_id')} = ANY(%s) ORDER BY d.{quote('device_id')} "
            f"FOR UPDATE OF d")
        # The read runs in one round trip with the devices' (`read_batch`), so it has
        # only the batch's device ids to go by. `= ANY(ARRAY(subquery))`: the subquery
        # runs once and the outer table is read by its index; as `IN (subquery)` the
        # planner chose to scan every slot or every event.
        of_devices = (f"= ANY(ARRAY(SELECT {quote('id')} FROM {quote(devices.name)} WHERE "
                      f"{quote('device_id')} = ANY(%s)))")
        self._slots_orders = (
            f"SELECT {columns('s', slots)}, o.{quote('id')}, o.{quote('state')} "
            f"FROM {quote(slots.name)} AS s LEFT JOIN LATERAL (SELECT o.{quote('id')}, "
            f"o.{quote('state')} FROM {quote(orders.name)} AS o WHERE "
            f"o.{quote('device_pk')} = s.{quote('device_pk')} AND o.{quote('slot_index')} = "
            f"s.{quote('index')} AND o.{quote('state')} IN ({states}) "
            f"ORDER BY o.{quote('id')} DESC LIMIT 1) AS o ON true "
            f"WHERE s.{quote('device_pk')} {of_devices}")
        self._history_of_devices = self._history_sql.replace("{in}", (
            f"= ANY(ARRAY(SELECT {quote('device_pk')} FROM {quote(slots.name)} WHERE "
            f"{quote('device_pk')} {of_devices} AND {quote('kind')} = 'sensor'))"))

    def _insert(self, dialect: Dialect, table: Table) -> tuple[_Insert, _Params]:
        """INSERT of every column but the id; its parameters from a row's dict."""
        columns = [c for c in table.c if c.name != "id"]
        return _Insert(self, table, columns), _Params(columns, dialect)

    def array_type(self, column) -> str:
        """PostgreSQL: the array type a column's values are cast from (`%b::<type>`:
        psycopg sends the array in binary; as text a list of datetimes cost 240 us per
        64). Without a length: a cast to VARCHAR(n) would cut a longer value short
        where storing it into the column refuses it."""
        return re.sub(r"\(.*\)", "", column.type.compile(dialect=self._dialect)) + "[]"

    def _in(self, values: list) -> tuple[str, list]:
        """`IN (...)` for a list: one array parameter on PostgreSQL, one mark per value
        on SQLite."""
        if self._postgres:
            return f"= ANY({self._mark})", [list(values)]
        if not values:
            return "IN (NULL)", []
        return f"IN ({', '.join([self._mark] * len(values))})", list(values)

    def _select(self, statement: _Select, cursor, values) -> list[SimpleNamespace]:
        in_list, params = self._in(values)
        return statement.rows(cursor, in_list, params)

    def devices_and_households(self, cursor, device_ids: list[str]):
        """SQLite: (devices, their households), in device_id order."""
        devices = self._select(self._devices, cursor, device_ids)
        return devices, self._select(self._households, cursor, sorted(
            {d.household_id for d in devices if d.household_id is not None}))

    def slots_and_open_orders(self, cursor, device_pks: list[int]):
        """SQLite: (the devices' slots, open orders as id, state, device_pk, slot_index),
        by ascending id, so the newest of a slot comes last."""
        return (self._select(self._slots, cursor, device_pks),
                self._select(self._open_orders, cursor, device_pks))

    def products(self, cursor, skus: list[str]) -> list[SimpleNamespace]:
        """The catalogue rows of `skus` (those that exist)."""
        return self._select(self._products, cursor, skus)

    @property
    def pipelined(self) -> bool:
        """PostgreSQL: the batch's reads go in one round trip (`read_batch`), its writes
        in another (`writes`)."""
        return self._postgres

    def read_batch(self, cursor, device_ids: list[str], since, limit: int):
        """PostgreSQL: (devices, households, slots, open orders, level history rows,
        models with an active release), as SQLite's `devices_and_households`,
        `slots_and_open_orders`, `level_history` (of the devices' sensor slots) and
        `active_models`, in one round trip: psycopg's pipeline mode sends the four
        statements together. The devices come locked, in device_id order; a slot comes
        with its newest open order only. PostgreSQL still runs the statements one after
        the other, each with its own snapshot, so the later reads see what the devices'
        locks waited for."""
        connection = cursor.connection
        ids = [list(device_ids)]
        with connection.pipeline():
            cursors = [connection.cursor() for _ in range(4)]
            cursors[0].execute(self._devices_households, ids)
            cursors[1].execute(self._slots_orders, ids)
            cursors[2].execute(self._history_of_devices, ids + [since, limit])
            cursors[3].execute(self._active_models)
        device_rows, slot_rows, history_rows, model_rows = (c.fetchall() for c in cursors)
        split = len(self._device_names)  # then the household's columns, its id first
        devices, households = [], {}
        for row in device_rows:
            devices.append(_bag(self._device_names, row[:split]))
            if row[split] is not None:
                households[row[split]] = _bag(self._household_names, row[split:])
        split = len(self._slot_names)  # then the open order's id and state
        slots, open_orders = [], []
        for row in slot_rows:
            slot = _bag(self._slot_names, row[:split])
            slots.append(slot)
            if row[split] is not None:
                open_orders.append(SimpleNamespace(id=row[split], state=row[split + 1],
                                                   device_pk=slot.device_pk,
                                                   slot_index=slot.index))
        return (devices, list(households.values()), slots, open_orders,
                [_bag(self._history.names, row) for row in history_rows],
                {row[0] for row in model_rows})

    def writes(self, cursor):
        """The batch's writes as one round trip on PostgreSQL (a pipeline: sent
        together, synchronised when the block ends), plain statements elsewhere."""
        return cursor.connection.pipeline() if self._postgres else nullcontext()

    def active_models(self, cursor) -> set[str]:
        """SQLite (PostgreSQL's come with `read_batch`)."""
        cursor.execute(self._active_models)
        return {row[0] for row in cursor.fetchall()}

    def update_devices(self, cursor, columns: tuple[str, ...], rows: list[dict]) -> None:
        """UPDATE devices SET <columns> WHERE id = pk, for each row (a dict with "pk"
        and the columns)."""
        sql = self._updates.get(columns)
        if sql is None:
            sql = self._updates[columns] = (self._update_from_arrays(columns)
                                            if self._postgres else self._update_one(columns))
        binds = [self._device_binds[name] for name in columns]
        if self._postgres:  # one statement for the batch: one array per column
            cursor.execute(sql, [[row["pk"] for row in rows]] + [
                [bind(row[name]) if bind else row[name] for row in rows]
                for name, bind in zip(columns, binds)])
            return
        cursor.executemany(sql, [
            [bind(row[name]) if bind else row[name] for name, bind in zip(columns, binds)]
            + [row["pk"]] for row in rows])

    def _update_one(self, columns: tuple[str, ...]) -> str:
        sets = ", ".join(f"{self._quote(name)} = {self._mark}" for name in columns)
        return (f"UPDATE {self._quote(Device.__table__.name)} SET {sets} "
                f"WHERE {self._quote('id')} = {self._mark}")

    def _update_from_arrays(self, columns: tuple[str, ...]) -> str:
        """PostgreSQL: every row's update in one statement (executemany ran one per
        device, each a statement for the server), from typed arrays: the same SQL
        text for every batch size, so psycopg keeps it prepared."""
        quote = self._quote
        table = quote(Device.__table__.name)
        names = ("id", *columns)
        sets = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in columns)
        arrays = ", ".join(f"%b::{self._device_arrays[name]}" for name in names)
        return (f"UPDATE {table} SET {sets} FROM unnest({arrays}) AS v("
                f"{', '.join(quote(name) for name in names)}) "
                f"WHERE {table}.{quote('id')} = v.{quote('id')}")

    def level_history(self, cursor, device_pks: list[int], since, limit: int):
        """SQLite (PostgreSQL's come with `read_batch`): (device_pk, slot, received_at,
        seq, remaining) of level reports since `since`, the latest `limit` per slot,
        oldest first per slot."""
        in_list, params = self._in(device_pks)
        bind = self._received_at_bind
        return self._history.rows(cursor, in_list,
                                  params + [bind(since) if bind else since, limit])

    def insert_events(self, cursor, rows: list[dict]) -> None:
        self._insert_events.run(cursor, map(self._event_params, rows))

    def insert_status(self, cursor, rows: list[dict]) -> None:
        self._insert_status.run(cursor, map(self._status_params, rows))

    def insert_transitions(self, cursor, rows: list[dict]) -> None:
        self._insert_transitions.run(cursor, map(self._transition_params, rows))

    @property
    def reserves_ids(self) -> bool:
        return self._postgres

    def reserve_order_ids(self, cursor, count: int) -> list[int]:
        """`count` order ids from the sequence, in one round trip (PostgreSQL)."""
        cursor.execute(self._reserve_ids, [count])
        return [row[0] for row in cursor.fetchall()]

    def insert_orders(self, cursor, rows: list[dict]) -> None:
        """Order rows whose "id" was reserved (`reserve_order_ids`)."""
        self._insert_orders_with_ids.run(
            cursor, [[row["id"]] + self._order_params(row) for row in rows])

    def insert_order(self, cursor, row: dict) -> int:
        """One order row (every column but the id given in `row` or NULL); its id."""
        cursor.execute(self._insert_order, self._order_params(row))
        if self._postgres:
            return cursor.fetchone()[0]
        return cursor.lastrowid


_BY_DIALECT: dict[str, BatchStatements] = {}


def for_dialect(dialect: Dialect) -> BatchStatements:
    statements = _BY_DIALECT.get(dialect.name)
    if statements is None:
        statements = _BY_DIALECT[dialect.name] = BatchStatements(dialect)
    return statements
