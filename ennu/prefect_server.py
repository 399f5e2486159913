"""Settings for the Prefect server the delivery workers report to (set in the server's environment).

Every task run's state changes reach the server as events, and its task-run recorder writes each one in a
transaction of its own by default (batch size 1): most of the server's CPU for a small batch. In batches of
up to 100, at least once a second, a task run shows in the UI at most a second later, for about a third
less server CPU per flow run (bench.batch_cost).
"""

from __future__ import annotations

SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    # Whole seconds: the recorder sleeps int(interval) between flushes, so 0.5 would never sleep.
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
}
