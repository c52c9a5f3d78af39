"""The SQL that payment-gateway runs for tokens, idempotency keys and authorizations.

Built once at import and executed with a parameter dict: constructing a statement per call (and
coercing its values, and computing its cache key) cost more CPU than running it on SQLite.
Parameters of UPDATE statements are not named after columns: SQLAlchemy reserves those names for
the SET clause.
"""

from sqlalchemy import bindparam, insert, select, text, update

from bookline.services.gateway.tables import authorizations, idempotency_keys, tokens

# -- tokens ---------------------------------------------------------------------------------------

INSERT_TOKEN = insert(tokens)

SELECT_TOKEN = select(tokens).where(tokens.c.token == bindparam("token"))

# -- idempotency keys: one row per (key, operation) -----------------------------------------------

_KEY_ROW = (idempotency_keys.c.key == bindparam("idempotency_key")) & (
    idempotency_keys.c.operation == bindparam("operation_name")
)

SELECT_IDEMPOTENCY_KEY = select(idempotency_keys).where(_KEY_ROW)

# takes the key, or changes nothing (rowcount 0) when an earlier request took it; the same text on
# SQLite and PostgreSQL, where a concurrent insert of the key waits for that request's transaction
# (which claims the key, does the work and stores the reply) to commit or roll back
CLAIM_IDEMPOTENCY_KEY = text(
    f'INSERT INTO {idempotency_keys.name} ("key", operation, request_hash, created_at) '
    "VALUES (:key, :operation, :request_hash, :created_at) "
    'ON CONFLICT ("key", operation) DO NOTHING'
)

RECORD_REPLY = (
    update(idempotency_keys)
    .where(_KEY_ROW)
    .values(response_status=bindparam("reply_status"), response_body=bindparam("reply_body"))
)

# -- authorizations -------------------------------------------------------------------------------

INSERT_AUTHORIZATION = insert(authorizations)

SELECT_AUTHORIZATION = select(authorizations).where(authorizations.c.auth_id == bindparam("auth_id"))

SELECT_AUTHORIZATION_FOR_UPDATE = SELECT_AUTHORIZATION.with_for_update()

# no SET clause of its own: it sets the columns named in the parameters (what a capture, void or
# refund changes), besides ``authorization`` which names the row
UPDATE_AUTHORIZATION = update(authorizations).where(authorizations.c.auth_id == bindparam("authorization"))

SELECT_AUTHORIZATION_BY_KEY = select(authorizations).where(
    authorizations.c.idempotency_key == bindparam("idempotency_key")
)

SELECT_AUTHORIZATIONS_OF_RESERVATION = (
    select(authorizations)
    .where(authorizations.c.reservation_id == bindparam("reservation_id"))
    .order_by(authorizations.c.created_at, authorizations.c.auth_id)
)
