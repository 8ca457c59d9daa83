"""Group commit: concurrent write transactions of one process share a single COMMIT.

A certificate is returned only after the database has it on disk (synchronous=FULL on SQLite,
fsync on PostgreSQL), and each enrollment writes two or three times: redeem a credential use,
reserve the serial, record the certificate. One fsync per write caps a server at a few hundred
enrollments per second however many cores it has. Here one thread owns the writer: callers
hand it a unit of work and wait; it runs whatever units are queued in one transaction, each
under its own SAVEPOINT (a unit that fails is rolled back alone and its caller gets the
error), commits once and wakes them all. Nobody is told "done" before the COMMIT returns, so
durability is exactly what it was; only the number of fsyncs changes.

There is no waiting for company: a lone caller commits at once, in its own thread when the
writer is idle (handing the unit to the writer thread and back costs two thread switches,
as much as the SQL itself on a fast disk). Batches form by themselves when requests arrive
while a COMMIT is in flight.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import sqlalchemy as sa

from fleetpki.store.sql.engine import release_writer_turn

T = TypeVar("T")
Unit = Callable[[sa.Connection], Any]
_MAX_BATCH = 256
_STOP = object()


class GroupCommitter:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # held by whoever runs a transaction
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        # One connection for every transaction, used by whoever holds _writing: a pool
        # checkout and check-in per transaction cost as much as the two inserts it makes.
        self._held: sa.Connection | None = None

    def run(self, unit: Callable[[sa.Connection], T]) -> T:
        """Run `unit` inside a write transaction; return once that transaction committed."""
        future: Future[T] = Future()
        queue_ = self._started()
        if queue_.empty() and self._writing.acquire(blocking=False):
            try:
                self._commit([(unit, future)])
            finally:
                self._writing.release()
        else:
            queue_.put((unit, future))
        return future.result()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None and self._pid == os.getpid():
                self._queue.put(_STOP)
                thread.join(timeout=30)
        with self._writing:
            held, self._held = self._held, None
            if held is not None and self._pid == os.getpid():
                held.close()

    def _started(self) -> queue.SimpleQueue[Any]:
        with self._lock:
            if self._pid != os.getpid():
                # A forked child inherits no threads: start afresh, with a queue, a lock and
                # a connection of its own (the parent's may be mid-transaction).
                self._pid, self._queue, self._thread = os.getpid(), queue.SimpleQueue(), None
                self._writing, self._held = threading.Lock(), None
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="fleetpki-commit",
                                                daemon=True)
                self._thread.start()
            return self._queue

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < _MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    with self._writing:
                        self._commit(batch)
                    return
                batch.append(item)
            with self._writing:
                self._commit(batch)

    def _commit(self, batch: list[tuple[Unit, Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            connection = self._connection()
        except Exception as error:  # noqa: BLE001 - no database: every waiter hears it
            for _, future in batch:
                future.set_exception(error)
            return
        try:
            with connection.begin():
                for unit, future in batch:
                    savepoint = connection.begin_nested() if len(batch) > 1 else None
                    try:
                        result = unit(connection)
                    except Exception as error:  # delivered to its caller, not raised here
                        if savepoint is None:
                            raise
                        savepoint.rollback()
                        outcomes.append((future, None, error))
                        continue
                    if savepoint is not None:
                        savepoint.commit()
                    outcomes.append((future, result, None))
        except Exception as error:  # noqa: BLE001 - the transaction failed: every waiter hears it
            self._drop_connection()  # it may be broken; the next transaction opens another
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        finally:
            release_writer_turn(connection)
        for future, result, failure in outcomes:
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)

    def _connection(self) -> sa.Connection:
        held = self._held
        if held is None or held.closed or held.invalidated:
            held = self._held = self._engine.connect()
        return held

    def _drop_connection(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            with contextlib.suppress(Exception):  # already broken; a new one replaces it
                held.close()
