"""Measurement: accuracy, latency, size and MACs of models (``benchmark``), reports, and the regression gate."""
