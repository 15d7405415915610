"""Integrations with training frameworks, one module each, each behind its own optional extra.

Nothing here is imported by ``import ml_dash``: a module of this package imports its framework,
so it is imported by name, e.g. ``from ml_dash.integrations.transformers import MLDashCallback``.
The integrations use the public ml_dash API (``Experiment``, streams, params, logs), as a
user's own glue code would.
"""
