"""The installed product holds no development tooling: setuptools' own discovery over pyproject.toml."""

from __future__ import annotations

import warnings
from pathlib import Path

from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = {"ennu", "flows", "tasks", "connectors", "mappings", "deployments", "intake", "engine"}
TOOLING = {"sandbox", "devtools", "bench", "tests"}


def installed_packages() -> list[str]:
    """The packages a wheel built from pyproject.toml holds (its `packages.find`, expanded by setuptools)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `[tool.setuptools]` in pyproject.toml is "beta" in older setuptools
        config = read_configuration(ROOT / "pyproject.toml", expand=True)
    return list(config["tool"]["setuptools"]["packages"])


def test_the_wheel_holds_no_development_tooling() -> None:
    tops = {name.split(".")[0] for name in installed_packages()}
    assert all((ROOT / name / "__init__.py").exists() for name in TOOLING)  # they are there to be left out
    assert not tops & TOOLING, f"installed with the product: {sorted(tops & TOOLING)}"


def test_the_wheel_holds_every_product_package() -> None:
    tops = {name.split(".")[0] for name in installed_packages()}
    assert tops == PRODUCT


def test_every_top_level_package_is_product_or_tooling() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py") if not p.parent.name.startswith(".")}
    assert packages == PRODUCT | TOOLING


def test_route_filters_implement_exactly_the_names_the_routing_vocabulary_declares() -> None:
    from mappings.routing import ROUTE_FILTER_NAMES
    from tasks.route_filters import ROUTE_FILTERS

    assert set(ROUTE_FILTERS) == ROUTE_FILTER_NAMES
