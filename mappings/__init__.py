"""Declarative mappings: the schema of `mappings/<event type>/<connector>.yaml`, transforms, loading, lint."""

from mappings.frame import apply_mapping
from mappings.loader import LintError, MappingError, lint_mappings, load_all_mappings, load_mapping
from mappings.schema import Mapping

__all__ = [
    "LintError",
    "Mapping",
    "MappingError",
    "apply_mapping",
    "lint_mappings",
    "load_all_mappings",
    "load_mapping",
]
