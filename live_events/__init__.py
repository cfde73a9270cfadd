"""Canvas Live Events into SQL: reading, checking, storing and projecting events.

Two ways in, one store: the LIVE_EVENTS job (``job.py``) drains an SQS queue, the HTTPS
receiver (``receiver.py``) takes Canvas's POSTs. Both go through the same two calls.

CONTRACT (stable signatures; the receiver builds on them)
--------------------------------------------------------
``courseinv.live_events.parse.read_events(payload, *, source) -> list[ParsedEvent | Rejected]``
    ``payload`` is one delivery: ``str``, ``bytes`` (UTF-8 JSON) or an already-decoded
    ``dict``. ``source`` names the way in (``"sqs"``, ``"https"``; at most 20 chars) and
    is stored with each row. The format is decided from the payload itself:

    * Canvas raw ``{"metadata": {...}, "body": {...}}`` -> one item;
    * Caliper 1.1 envelope ``{"sensor", "sendTime", "dataVersion", "data": [event, ...]}``
      -> one item per event of ``data`` (each stored with the envelope around it alone);
    * anything unreadable (not JSON, wrong envelope, missing required fields, wrong types,
      an empty ``data``) -> exactly one ``Rejected`` with a reason and the payload text.

    Never raises on bad input. Each ``ParsedEvent`` is validated against the package's
    versioned JSON Schema for its type and format (``schemas/``), carries a stable
    ``event_key`` (Caliper: the event's ``id``; Canvas raw: ``"canvas:"`` + SHA-256 of its
    canonical JSON, so a redelivery maps to the same key), local integer ids (Canvas
    global ids and Caliper URNs normalised), UTC times, the unknown field paths (drift)
    and its projection rows. Events of types without a schema are kept (``handled`` is
    False) but not projected.

``courseinv.live_events.parse.read_event(payload, *, source) -> ParsedEvent | Rejected``
    The same for a payload holding exactly one event; a Caliper envelope with several
    events gives a ``Rejected`` telling to use ``read_events``.

``courseinv.live_events.store.store_batch(engine, items) -> BatchResult``
    ``items``: a sequence of ``ParsedEvent | Rejected``. ONE transaction: inserts into
    ``live_event`` idempotently on ``event_key`` (a duplicate, in the batch or already
    stored, is counted once), updates the projections only from rows this call actually
    inserted, records drift and rejects. Raises (nothing committed) on a database failure;
    retries deadlocks/serialization failures itself. Works on MariaDB/MySQL, PostgreSQL
    and SQLite, and concurrent callers (competing consumers) end with the same tables as
    one caller would.

Everything else in the package is internal.
"""
