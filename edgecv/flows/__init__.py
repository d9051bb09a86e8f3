"""Flows that chain the wings: ``training`` (train to a file), ``pipeline`` (compress), ``search``, and the
``stages`` runner both use."""
