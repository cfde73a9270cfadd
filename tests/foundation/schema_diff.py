"""Compare a live database's schema with ``db/tables.py`` and say what a migration must add.

Used by the migration tests: an empty database migrated to head must have exactly the
schema of the metadata (tables, columns, types, nullability, primary/foreign keys, unique
constraints and indexes). Each difference is one sentence naming the table and column and,
for something missing, the DDL to put in a new ``db/migrations/`` file.
"""

from __future__ import annotations

import re

from sqlalchemy import Column, Engine, MetaData, Table, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

# Spellings that reflection returns for the same type the metadata compiles to.
_SYNONYMS = {
    "mysql": {"BOOL": "TINYINT", "BOOLEAN": "TINYINT", "INT": "INTEGER"},
    "postgresql": {"TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP", "INT": "INTEGER"},
    "sqlite": {"INT": "INTEGER"},
}


def normalise_type(type_sql: str, dialect: str) -> str:
    """Upper case, no display widths (``BIGINT(20)``), no charset/collation, synonyms folded."""
    sql = type_sql.upper()
    sql = re.sub(r"\s+(CHARACTER SET|COLLATE)\s+\w+", "", sql)
    sql = re.sub(r"^(TINYINT|SMALLINT|INTEGER|INT|BIGINT)\(\d+\)", r"\1", sql)
    sql = sql.strip()
    return _SYNONYMS.get(dialect, {}).get(sql, sql)


def _expected_type(column: Column, dialect: Dialect) -> str:
    return normalise_type(column.type.compile(dialect=dialect), dialect.name)


def _add_column_ddl(table: Table, column: Column, dialect: Dialect) -> str:
    spec = column.type.compile(dialect=dialect)
    null = "" if column.nullable else " NOT NULL"
    return f"ALTER TABLE {table.name} ADD COLUMN {column.name} {spec}{null}"


def _hint(dialect: Dialect) -> str:
    return f" (write the SQL for mysql, postgresql and sqlite; this is the {dialect.name} form)"


def _column_differences(insp, table: Table, dialect: Dialect) -> list[str]:
    live = {c["name"]: c for c in insp.get_columns(table.name)}
    problems = []
    for column in table.columns:
        where = f"{table.name}.{column.name}"
        found = live.get(column.name)
        if found is None:
            problems.append(
                f"db/tables.py has column {where} but no migration creates it: add a migration "
                f"with `{_add_column_ddl(table, column, dialect)}`{_hint(dialect)}"
            )
            continue
        expected = _expected_type(column, dialect)
        actual = normalise_type(found["type"].compile(dialect=dialect), dialect.name)
        if expected != actual:
            problems.append(
                f"{where} is {actual} in the migrated database but {expected} in db/tables.py: "
                "add a migration that alters the column (or fix db/tables.py)"
            )
        if bool(found["nullable"]) != bool(column.nullable):
            want = "NULL" if column.nullable else "NOT NULL"
            problems.append(
                f"{where} should be {want} per db/tables.py: add a migration that alters it"
            )
    for name in live:
        if name not in table.columns:
            problems.append(
                f"the migrations create column {table.name}.{name} that db/tables.py lacks: "
                "add it to db/tables.py (or a migration that drops it)"
            )
    order = [c for c in live if c in table.columns]
    if not problems and order != [c.name for c in table.columns]:
        problems.append(
            f"{table.name}: column order {order} differs from db/tables.py; list new columns "
            "last in db/tables.py, in the order the migrations add them"
        )
    return problems


def _key_differences(insp, table: Table) -> list[str]:
    problems = []
    pk = insp.get_pk_constraint(table.name)["constrained_columns"]
    if pk != [c.name for c in table.primary_key.columns]:
        problems.append(f"{table.name}: primary key is {pk}, db/tables.py says "
                        f"{[c.name for c in table.primary_key.columns]}")
    live_fks = {
        (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
        for fk in insp.get_foreign_keys(table.name)
    }
    want_fks = {
        (tuple(c.name for c in fk.columns), fk.referred_table.name,
         tuple(e.column.name for e in fk.elements))
        for fk in table.foreign_key_constraints
    }
    for fk in sorted(want_fks - live_fks):
        problems.append(f"{table.name}: foreign key {fk[0]} -> {fk[1]}{fk[2]} is in db/tables.py "
                        "but no migration creates it")
    for fk in sorted(live_fks - want_fks):
        problems.append(f"{table.name}: the migrations create foreign key {fk[0]} -> {fk[1]} "
                        "that db/tables.py lacks")
    return problems


def _index_signatures(insp, table_name: str, dialect: str) -> set[tuple[tuple[str, ...], bool]]:
    """(columns, unique) of every index and unique constraint, the primary key excluded."""
    found = set()
    for index in insp.get_indexes(table_name):
        if dialect == "mysql" and index.get("duplicates_constraint"):
            continue
        found.add((tuple(index["column_names"]), bool(index["unique"])))
    for unique in insp.get_unique_constraints(table_name):
        found.add((tuple(unique["column_names"]), True))
    return found


def _expected_indexes(table: Table) -> set[tuple[tuple[str, ...], bool]]:
    from sqlalchemy import UniqueConstraint

    found = {(tuple(c.name for c in i.columns), bool(i.unique)) for i in table.indexes}
    found |= {
        (tuple(c.name for c in u.columns), True)
        for u in table.constraints
        if isinstance(u, UniqueConstraint)
    }
    return found


def _index_differences(insp, table: Table, dialect: Dialect) -> list[str]:
    live = _index_signatures(insp, table.name, dialect.name)
    if dialect.name == "mysql":
        # InnoDB indexes every foreign key's columns; those are not schema decisions.
        fk_cols = {tuple(c.name for c in fk.columns) for fk in table.foreign_key_constraints}
        live = {sig for sig in live if sig[1] or sig[0] not in fk_cols}
    want = _expected_indexes(table)
    problems = []
    for cols, unique in sorted(want - live):
        kind = "unique constraint" if unique else "index"
        ddl = next((str(CreateIndex(i).compile(dialect=dialect)) for i in table.indexes
                    if tuple(c.name for c in i.columns) == cols), None)
        hint = f": add a migration with `{ddl}`" if ddl else ": add a migration that creates it"
        problems.append(f"{table.name}: {kind} on {list(cols)} is in db/tables.py but no "
                        f"migration creates it{hint}")
    for cols, unique in sorted(live - want):
        kind = "unique constraint" if unique else "index"
        problems.append(f"{table.name}: the migrations create a {kind} on {list(cols)} that "
                        "db/tables.py lacks")
    return problems


def schema_differences(engine: Engine, metadata: MetaData) -> list[str]:
    """Every way the database behind ``engine`` differs from ``metadata``; empty when equal."""
    insp = inspect(engine)
    dialect = engine.dialect
    present = set(insp.get_table_names())
    problems: list[str] = []
    for table in metadata.sorted_tables:
        if table.name not in present:
            ddl = str(CreateTable(table).compile(dialect=dialect)).strip()
            problems.append(
                f"db/tables.py has table {table.name} but no migration creates it: add a "
                f"migration with\n{ddl}{_hint(dialect)}"
            )
            continue
        problems += _column_differences(insp, table, dialect)
        problems += _key_differences(insp, table)
        problems += _index_differences(insp, table, dialect)
    known = set(metadata.tables) | {"_yoyo_migration", "_yoyo_log", "_yoyo_version",
                                    "yoyo_lock", "sqlite_sequence"}
    for name in sorted(present - known):
        problems.append(f"the migrations create table {name} that db/tables.py lacks")
    return problems
