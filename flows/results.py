"""Where the worker's flows keep their results: nowhere (the sync log and delivery states are the record).

A flow run's result store is resolved at every run; a flow that names no storage makes Prefect ask the
server for its default result storage, twice a run (GET /admin/storage), for results it never writes.
Naming a local path (never written: `persist_result=False`; a path, unlike a block, needs no API call to
resolve) saves both round trips.
"""

from __future__ import annotations

from typing import Any

from prefect.settings import get_current_settings

# `@flow(..., **NO_RESULTS)`
NO_RESULTS: dict[str, Any] = {
    "result_storage": get_current_settings().results.local_storage_path,
    "persist_result": False,
}
