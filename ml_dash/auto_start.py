"""``dxp``: one experiment made when this module is imported, for scratch work.

Its prefix is ``RUN.prefix`` expanded at the import: by default
``{user}/scratch/{now:%Y/%m-%d}/{path_stem}/{now:%H.%M.%S}/{job_counter:03d}``,
so every launch of a script gets a fresh run named after the script::

    from ml_dash.auto_start import dxp

    with dxp.run:
        dxp.params.set(lr=0.001)
        dxp.metrics("train").log(loss=0.5, step=0)

Like any experiment its run is started by ``with dxp.run:`` or
``dxp.run.start()`` (importing writes nothing: a module that is imported but
never used leaves no folder behind), and a run still open when the
interpreter exits is completed then.  Set ``RUN.prefix`` (or the
``ML_DASH_PREFIX`` environment variable) before the import to name it
otherwise; ``dxp.run.prefix = ...`` also works until its run starts.
"""

from .experiment import Experiment

dxp = Experiment()

__all__ = ["dxp"]
