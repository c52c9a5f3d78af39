"""The SQL that availability-service runs on every search, hold, commit and release.

Built once at import and executed with a parameter dict: constructing a statement per call (and
coercing its values, and computing its cache key) cost more CPU than running it on SQLite.
A reservation id is passed as ``reservation`` (``reservations`` for a list), not
``reservation_id``: SQLAlchemy reserves column names for the SET clause of an UPDATE.
"""

from sqlalchemy import bindparam, delete, exists, insert, or_, select, update

from bookline.services.availability.tables import holds, properties, room_night_claims, rooms

_claims = room_night_claims.c

# a claim that takes its night: booked, or a hold that has not expired at :now
LIVE_CLAIM = or_(_claims.kind == "booked", _claims.expires_at > bindparam("now"))

# -- search ---------------------------------------------------------------------------------------

SELECT_PROPERTY_ID = select(properties.c.property_id).where(properties.c.property_id == bindparam("property_id"))

_TAKEN = exists().where(
    _claims.room_id == rooms.c.room_id,
    _claims.night >= bindparam("check_in"),
    _claims.night < bindparam("check_out"),
    LIVE_CLAIM,
)
# every room of the property, the fifth column saying whether it is free for the whole stay
SELECT_ROOMS_WITH_FREE_FLAG = (
    select(rooms.c.room_id, rooms.c.name, rooms.c.room_type, rooms.c.capacity, ~_TAKEN)
    .where(rooms.c.property_id == bindparam("property_id"))
    .order_by(rooms.c.room_id)
)

# -- holds ----------------------------------------------------------------------------------------

SELECT_HOLD = select(holds).where(holds.c.reservation_id == bindparam("reservation"))

# the room's property, beside every column of the reservation's hold (all NULL when it has none)
SELECT_ROOM_WITH_HOLD = (
    select(rooms.c.property_id.label("room_property_id"), holds)
    .select_from(rooms.outerjoin(holds, holds.c.reservation_id == bindparam("reservation")))
    .where(rooms.c.room_id == bindparam("room_id"))
)

DELETE_EXPIRED_CLAIMS_OF_NIGHTS = delete(room_night_claims).where(
    _claims.room_id == bindparam("room_id"),
    _claims.night.in_(bindparam("nights", expanding=True)),
    _claims.kind == "hold",
    _claims.expires_at <= bindparam("now"),
)

INSERT_CLAIM = insert(room_night_claims)

INSERT_HOLD = insert(holds)

SELECT_FIRST_LIVE_CLAIM_OF_NIGHTS = (
    select(_claims.reservation_id, _claims.kind)
    .where(
        _claims.room_id == bindparam("room_id"),
        _claims.night.in_(bindparam("nights", expanding=True)),
        LIVE_CLAIM,
    )
    .order_by(_claims.night)
    .limit(1)
)

# fencing: only claims of a hold that is still valid at :now become booked nights
BOOK_HELD_CLAIMS = (
    update(room_night_claims)
    .where(
        _claims.reservation_id == bindparam("reservation"),
        _claims.kind == "hold",
        _claims.expires_at > bindparam("now"),
    )
    .values(kind="booked", expires_at=None)
)
# the same without the fence, for the control test that shows the fence matters
BOOK_HELD_CLAIMS_UNFENCED = (
    update(room_night_claims)
    .where(_claims.reservation_id == bindparam("reservation"), _claims.kind == "hold")
    .values(kind="booked", expires_at=None)
)

SET_HOLD_STATUS = (
    update(holds)
    .where(holds.c.reservation_id == bindparam("reservation"))
    .values(status=bindparam("new_status"), updated_at=bindparam("now"))
)

EXPIRE_HELD_HOLD = (
    update(holds)
    .where(holds.c.reservation_id == bindparam("reservation"), holds.c.status == "held")
    .values(status="expired", updated_at=bindparam("now"))
)

DELETE_HELD_CLAIMS = delete(room_night_claims).where(
    _claims.reservation_id == bindparam("reservation"), _claims.kind == "hold"
)

DELETE_ALL_CLAIMS = delete(room_night_claims).where(_claims.reservation_id == bindparam("reservation"))

# -- sweeper --------------------------------------------------------------------------------------

# the holds one sweeper takes: on PostgreSQL the rows are locked until its transaction ends and a sweeper
# of another replica skips them (SQLite has one writer at a time anyway)
SELECT_EXPIRED_HOLD_IDS = (
    select(holds.c.reservation_id)
    .where(holds.c.status == "held", holds.c.expires_at <= bindparam("now"))
    .limit(500)
    .with_for_update(skip_locked=True)
)

DELETE_HELD_CLAIMS_OF_RESERVATIONS = delete(room_night_claims).where(
    _claims.reservation_id.in_(bindparam("reservations", expanding=True)),
    _claims.kind == "hold",
)

EXPIRE_HOLDS = (
    update(holds)
    .where(holds.c.reservation_id.in_(bindparam("reservations", expanding=True)), holds.c.status == "held")
    .values(status="expired", updated_at=bindparam("now"))
)
