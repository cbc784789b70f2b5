"""Reference models reported beside the model's numbers: linear-nonlinear (LN) regression and a
CNN core + Gaussian readout + behaviour modulator (SENSORIUM style)."""

from neurofm.core.baselines.cnn import CNNBaseline, CNNConfig, CNNPredictor, fit_cnn_baseline
from neurofm.core.baselines.ln import LinearNonlinear, fit_linear_nonlinear

__all__ = [
    "CNNBaseline",
    "CNNConfig",
    "CNNPredictor",
    "LinearNonlinear",
    "fit_cnn_baseline",
    "fit_linear_nonlinear",
]
