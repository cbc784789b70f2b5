"""Reference models reported beside the model's numbers: linear-nonlinear (LN) regression."""

from neurofm.core.baselines.ln import LinearNonlinear, fit_linear_nonlinear

__all__ = ["LinearNonlinear", "fit_linear_nonlinear"]
