"""Sweeps: the independent trials of a landscape, a front (of budgets, or of module counts for
hodoscope designs) and the gradient-free baselines, run as Ray tasks and gathered into one
``landscape.json``.

Follow a sweep through :mod:`~mutomo.sweep.plan` (the trials), :mod:`~mutomo.sweep.trial`
(one trial, checkpointed), :mod:`~mutomo.sweep.engine` (Ray), :mod:`~mutomo.sweep.gather`
(the judgement on the physical evaluation) and :mod:`~mutomo.app.sweep` (``mutomo sweep``).
"""

from mutomo.sweep.plan import SweepPlan, Trial

__all__ = ["SweepPlan", "Trial"]
