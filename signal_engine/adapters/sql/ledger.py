"""AuditLog, PositionBook and RiskLog on SQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import sqlalchemy as sa

from signal_engine.adapters.sql import schema
from signal_engine.adapters.sql.engine import in_transaction, upsert
from signal_engine.storage.records import Position, RiskEvent, SignalAudit
from signal_engine.storage.times import naive_utc


class SqlLedger:
    """The signal audit log, current positions and risk events.

    Parameters
    ----------
    engine
        A migrated SQLAlchemy engine (MySQL/MariaDB or SQLite).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def record_signal(self, entry: SignalAudit) -> None:
        row = {**dataclasses.asdict(entry), "as_of": naive_utc(entry.as_of), "served_at": naive_utc(entry.served_at)}
        in_transaction(self._engine, lambda connection: connection.execute(schema.signal_audit.insert(), row))

    def signals(self, symbol: str) -> list[SignalAudit]:
        table = schema.signal_audit
        query = sa.select(table).where(table.c.symbol == symbol).order_by(table.c.as_of, table.c.id)
        with self._engine.connect() as connection:
            return [SignalAudit(**{k: v for k, v in row.items() if k != "id"})
                    for row in connection.execute(query).mappings()]

    def set_position(self, position: Position) -> None:
        row = {**dataclasses.asdict(position), "updated_at": naive_utc(position.updated_at)}
        in_transaction(self._engine, lambda connection: upsert(connection, schema.positions, [row], ("symbol",)))

    def positions(self) -> list[Position]:
        with self._engine.connect() as connection:
            rows = connection.execute(sa.select(schema.positions).order_by(schema.positions.c.symbol)).mappings()
            return [Position(**row) for row in rows]

    def record_risk_event(self, event: RiskEvent) -> None:
        row = {**dataclasses.asdict(event), "occurred_at": naive_utc(event.occurred_at)}
        in_transaction(self._engine, lambda connection: connection.execute(schema.risk_events.insert(), row))

    def record_risk_events(self, events: Sequence[RiskEvent]) -> None:
        """All ``events`` in one transaction: a failure stores none of them."""
        rows = [{**dataclasses.asdict(e), "occurred_at": naive_utc(e.occurred_at)} for e in events]
        if rows:
            in_transaction(self._engine, lambda connection: connection.execute(schema.risk_events.insert(), rows))

    def risk_events(self, symbol: str) -> list[RiskEvent]:
        table = schema.risk_events
        query = sa.select(table).where(table.c.symbol == symbol).order_by(table.c.occurred_at, table.c.id)
        with self._engine.connect() as connection:
            return [RiskEvent(**{k: v for k, v in row.items() if k != "id"})
                    for row in connection.execute(query).mappings()]
