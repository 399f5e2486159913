"""Map: apply a connector's declarative mapping to the routed frame, vectorised."""

from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NONE

from mappings import Mapping, apply_mapping


@task(name="map", cache_policy=NONE)
def map_records(routes: list[tuple[Mapping, pd.DataFrame]]) -> list[pd.DataFrame]:
    """Per route, in order: destination fields (and `_record_key`, `_event_id`, `_user_id`) for every
    routed row."""
    return [apply_mapping(mapping, frame) for mapping, frame in routes]
