"""Pipeline stages as Prefect tasks: extract, route, map, validate, push, record."""
