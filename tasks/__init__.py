"""Pipeline stages: prepare (extract, route, map and validate, as plain functions), push, record."""
