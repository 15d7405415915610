"""One adapter module per benchmarked system.

Each module gives ``version()``, a ``Writer(directory, option)`` with
``log(step, train_loss, train_accuracy, eval_loss, eval_accuracy, epoch)``,
``commit()`` and ``close()``, and (unless the system cannot be read back) a
``Reader(directory)`` with ``counts()`` (points per stream: train, eval,
root), ``full()`` (every train loss, in step order), ``point(k)`` (the
train loss of step ``k``, or ``NotImplementedError`` naming why there is no
such API) and ``close()``. ``POINT_API`` says which public call ``point``
uses. Adapters run under the system's own interpreter, so they import only
what that environment has, plus ``measure``.
"""
