"""Plugins' learning-rate scales: parameter groups, the step they give, and bad scales refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from training_helpers import stimulus_model

from neurofm.core.data import open_dataset
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import parameter_groups


def test_the_stimulus_path_trains_at_its_scale_and_the_rest_at_one(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = stimulus_model(sessions, readout={"stimulus_lr_scale": 3.0}, core={"lr_scale": 1.5})
    scales = model.learning_rate_scales()
    names = dict(model.named_parameters())
    core = [n for n in names if n.startswith("encoders.movie.core.")]
    assert core and all(scales[n] == 1.5 for n in core)
    assert scales["readout.shared_weights"] == 3.0
    for table in ("logits", "weights", "shifter", "log_tau", "amplitude", "drive_bias"):
        keys = [n for n in names if n.startswith(f"readout.{table}.")]
        assert keys and all(scales[n] == 3.0 for n in keys), table
    # positions and spreads train at 1, as do the identities, biases and context projections
    unscaled = ("backbone.", "readout.identity.", "readout.residual.", "readout.context.",
                "readout.modulation.", "readout.bias.", "encoders.movie.to_token.",
                "readout.retinotopy.", "readout.delta.", "readout.log_sigma.")  # fmt: skip
    for table in ("retinotopy", "delta", "log_sigma"):
        assert [n for n in names if n.startswith(f"readout.{table}.")], table
    assert not [n for n in scales if n.startswith(unscaled)]
    groups = parameter_groups(model, 1e-3, 0.01)
    assert [g["lr"] for g in groups[:2]] == [1e-3, 1e-3]  # the unscaled groups come first
    by_id = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(by_id) == len(names)  # every parameter in exactly one group
    for name, p in names.items():
        assert by_id[id(p)] == pytest.approx(1e-3 * scales.get(name, 1.0)), name


def test_a_scaled_parameter_moves_that_much_further_in_a_step(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = stimulus_model(sessions, core={"lr_scale": 4.0})
    training = TrainingConfig(steps=5, batch_size=4, lr=1e-3, warmup_steps=0, eval_every=10**6,
                              weight_decay=0.0, device="cpu", num_workers=1,
                              tasks={"responses_from_stimulus": 1.0})  # fmt: skip
    trainer = Trainer(model, sessions, training, window_s=1.0, progress=False)
    core = model.encoder("movie").core.temporal[0].weight
    other = model.encoder("movie").to_token.weight
    before = core.detach().clone(), other.detach().clone()
    trainer.train_step()
    # Adam's first step moves every parameter with a gradient by about the learning rate
    moved_core = (core.detach() - before[0]).abs().median()
    moved_other = (other.detach() - before[1]).abs().median()
    assert moved_core / moved_other == pytest.approx(4.0, rel=0.1)


@pytest.mark.parametrize(
    ("scales", "message"),
    [({"nothing.": 2.0}, "none of its parameters"), ({"core.": 0.0}, "positive number"),
     ({"core.": float("nan")}, "positive number")],
)  # fmt: skip
def test_bad_scales_are_refused_naming_the_plugin(tiny_data: Path, scales, message) -> None:
    model = stimulus_model(open_dataset(tiny_data))
    model.encoder("movie").learning_rate_scales = lambda: scales
    with pytest.raises(ValueError, match=message) as info:
        model.learning_rate_scales()
    assert "movie_core" in str(info.value)
