"""Integrations: framework loggers and callbacks that write to ml_dash, and importers.

Each module is one framework's adapter and imports that framework, so none of
them is imported by ``import ml_dash``; import the one you use::

    from ml_dash.integrations.lightning import MLDashLogger    # PyTorch Lightning
    from ml_dash.integrations.keras import MLDashCallback      # Keras 3
    from ml_dash.integrations.transformers import MLDashCallback  # Hugging Face
    from ml_dash.integrations.tensorboard import import_tensorboard

They talk to ml_dash through its public API only (``Experiment``, ``params``,
``metrics``, ``files``), like any user script.  See docs/integrations.md.
"""
