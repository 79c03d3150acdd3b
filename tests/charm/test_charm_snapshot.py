"""Each event reads its state once: one snapshot, one read of last-sync.json and progress.json, the
options validated once, whatever the handlers and the status ask of it."""

from __future__ import annotations

import pytest
from ops import testing

from sync_charm import snapshot, sync_process


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often the event read its snapshot, the sync's result and its progress."""
    counts = {"snapshot": 0, "result": 0, "progress": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(snapshot, "read", counting("snapshot", snapshot.read))
    monkeypatch.setattr(sync_process, "read_result", counting("result", sync_process.read_result))
    monkeypatch.setattr(sync_process, "read_progress", counting("progress", sync_process.read_progress))
    return counts


@pytest.mark.parametrize("event", ["config_changed", "update_status", "upgrade_charm", "leader_elected"])
def test_one_event_reads_its_state_once(ctx, keystone, machine, reads, event):
    machine.write_result(created=[{"id": "1"}])

    out = ctx.run(getattr(ctx.on, event)(), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    assert reads == {"snapshot": 1, "result": 1, "progress": 1}
    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-24 10:02 UTC: 1 created, 0 failed)"
    )


def test_invalid_config_is_validated_once_and_reported(ctx, keystone, machine, reads):
    out = ctx.run(
        ctx.on.config_changed(), testing.State(leader=True, config={"frequency": "yearly"}, relations=[keystone])
    )

    assert reads["snapshot"] == 1
    assert out.unit_status == testing.BlockedStatus(
        "Invalid config: frequency: Input should be 'hourly', 'daily' or 'weekly' (got 'yearly')"
    )
