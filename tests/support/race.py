"""A claimer process for the claim race test (importable, so `spawn` can start it)."""

from __future__ import annotations

from dlstore import db
from dlstore.store import TaskStore


def drain(url: str, worker_id: str, results) -> None:  # type: ignore[no-untyped-def]
    """Claim until the queue is empty, completing each row; report (id, created_at)s."""
    engine = db.make_engine(url)
    store = TaskStore(engine)
    claimed = []
    idle_rounds = 0
    while idle_rounds < 3:
        found = store.claim(worker_id)
        if found is None:
            idle_rounds += 1
            continue
        idle_rounds = 0
        task, claim = found
        claimed.append((task.id, task.created_at))
        assert store.complete(claim, output_path=f"/out/{task.id}.mp4", learned={})
    engine.dispose()
    results.put((worker_id, claimed))
