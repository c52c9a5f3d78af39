"""What only the embedded SQLite queue does: one file opened by many connections and processes, and
the late ack it still accepts. The contract every queue keeps (publish, claims, ack/nack, the
redelivery fault) runs against SQLite and NATS JetStream in test_queue_contract.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from bookline.adapters.queue import SqliteQueue

TOPIC = "booking.confirmed"


async def test_the_file_and_its_tables_are_created_on_first_use_only(tmp_path: Path):
    path = tmp_path / "sub" / "queue.db"
    queue = SqliteQueue(path, visibility_timeout_s=30)
    try:
        assert path.parent.is_dir() and not path.exists()
        await queue.publish(TOPIC, {}, headers={}, message_id="m1")
        assert path.exists()
    finally:
        await queue.close()


async def test_an_expired_claim_nobody_took_over_can_still_be_acked(tmp_path: Path):
    # the row is still the same claim (its attempt did not move), so the ack settles it; NATS
    # JetStream refuses that ack and delivers the message once more (test_queue_contract.py)
    queue = SqliteQueue(tmp_path / "queue.db", visibility_timeout_s=0.1)
    try:
        await queue.publish(TOPIC, {}, headers={}, message_id="m1")
        [late] = await queue.receive([TOPIC], consumer="g")
        await asyncio.sleep(0.15)

        await queue.ack(late)

        assert await queue.receive([TOPIC], consumer="g") == []
    finally:
        await queue.close()


async def test_connections_opening_a_new_queue_file_at_once_all_succeed(tmp_path: Path):
    # the first opener switches a new file to WAL, which SQLite refuses at once (no busy wait)
    # to anyone else trying at the same moment
    for attempt in range(40):
        path = tmp_path / f"queue{attempt}.db"
        queues = [SqliteQueue(path, visibility_timeout_s=30) for _ in range(8)]
        try:
            await asyncio.gather(*(q.publish(TOPIC, {}, headers={}, message_id=f"m{i}") for i, q in enumerate(queues)))
            assert len(await queues[0].receive([TOPIC], consumer="g")) == 8
        finally:
            for q in queues:
                await q.close()


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from bookline.adapters.queue import SqliteQueue

    async def main():
        q = SqliteQueue(Path(sys.argv[1]), visibility_timeout_s=60)
        got = []
        idle = 0
        while idle < 5:
            batch = await q.receive(["booking.confirmed"], consumer="g", max_messages=5)
            got.extend(d.message_id for d in batch)
            idle = 0 if batch else idle + 1
            await asyncio.sleep(0.005)
        await q.close()
        print(json.dumps(got))

    asyncio.run(main())
    """
)


async def test_consumer_processes_claim_disjoint_messages(tmp_path: Path):
    path = tmp_path / "queue.db"
    producer = SqliteQueue(path, visibility_timeout_s=30)
    for i in range(300):
        await producer.publish(TOPIC, {"n": i}, headers={}, message_id=f"m{i:03d}")
    await producer.close()

    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [json.loads(w.communicate(timeout=60)[0]) for w in workers]

    claimed = [mid for out in outputs for mid in out]
    assert len(claimed) == len(set(claimed)) == 300
