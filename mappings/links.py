"""What production must be told before notices can link anywhere: each `link` base an enabled route uses."""

from __future__ import annotations

from ennu.settings import Settings, configured_link_base, link_variable
from mappings.loader import load_all_mappings
from mappings.routing import routing_table
from mappings.transforms import LinkParams


def bases_linked(settings: Settings) -> set[str]:
    """The `link` bases (`host_app`, `ehr`) the mappings of the enabled routes use."""
    table = routing_table(settings.mappings_dir)
    mappings = load_all_mappings(settings.mappings_dir)
    used: set[str] = set()
    for event_type in table.routes:
        for spec in table.routes_for(event_type):
            mapping = mappings.get((event_type, spec.mapping_name))
            if mapping is None:
                continue
            used |= {
                step.params.to
                for field in mapping.fields.values()
                for step in field.transforms
                if isinstance(step.params, LinkParams)
            }
    return used


def unset_link_problems(settings: Settings) -> list[str]:
    """A sentence per base an enabled route links to whose setting is missing (none in local mode)."""
    if settings.local:
        return []
    return [
        f"{link_variable(base)} is not set (an enabled route's notices link there)"
        for base in sorted(bases_linked(settings))
        if configured_link_base(settings, base) is None
    ]
