"""Message queues: the port and its adapters (a SQLite file for the embedded default)."""

from bookline.adapters.queue.port import MESSAGING_SYSTEM, Delivery, MessageQueue
from bookline.adapters.queue.sqlite import SqliteQueue

__all__ = ["MESSAGING_SYSTEM", "Delivery", "MessageQueue", "SqliteQueue"]
