"""ENNU integration hub core: settings, database models and the host app's event model."""
