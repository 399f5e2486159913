"""The delivery engine's long-lived worker: warm, in-process flow runs over claimed micro-batches."""
