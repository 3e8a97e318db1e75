"""CPU per announcement: two learnae hosts in one process, 300 announcements.

    .venv/bin/python -m bench.gossip_cpu

Prints the process CPU time per message (publisher + receiver together).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.gossip.helpers import swarm, wait_until  # noqa: E402


async def main(n: int = 300) -> None:
    async with swarm(2) as (a, b):
        entries = [a.entry() for _ in range(n)]
        cpu, wall = time.process_time(), time.time()
        for e in entries:
            await a.gossip.publish(e)
        await wait_until(lambda: len(b.got) >= n, 300)
        print(f"delivered {len(b.got)}/{n}; CPU {1000 * (time.process_time() - cpu) / n:.2f} ms per message "
              f"(both hosts); wall {time.time() - wall:.2f} s")


if __name__ == "__main__":
    trio.run(main)
