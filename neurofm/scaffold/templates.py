"""Text of the files ``neurofm new-plugin`` writes, as :class:`string.Template` strings.

Placeholders: ``$name`` (registered name), ``$package`` (Python package), ``$dist`` (distribution
name), ``$group`` (entry-point group), ``$kind`` (registry kind, e.g. ``modalities``), ``$module``
(module file stem), ``$cls`` (plugin class), ``$config`` (config class), ``$title`` (class stem),
``$neurofm_version``.
"""

from __future__ import annotations

__all__ = ["COMMON", "HEAD", "MODALITY", "READOUT"]

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A neurofm $kind_singular plugin: $name."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["neurofm>=$neurofm_version"]

[project.optional-dependencies]
test = ["pytest>=8"]

# neurofm finds the plugin through this entry point; the name is the plugin's registered name and
# must equal its config's `type` tag.
[project.entry-points."$group"]
"$name" = "$package.$module:$cls"

[tool.setuptools.packages.find]
include = ["$package*"]

[tool.pytest.ini_options]
testpaths = ["tests"]

[tool.ruff]
line-length = 100

[tool.ruff.lint]
select = ["E", "F", "W", "I", "B", "UP", "SIM", "RUF"]
ignore = ["E501"]

[tool.ruff.lint.isort]
known-first-party = ["$package"]
"""

README = """\
# $dist

A [neurofm](https://pypi.org/project/neurofm/) $kind_singular plugin registered as `$name`
(entry-point group `$group`, class `$package.$module:$cls`).

## Install and test

```bash
pip install -e ".[test]"
python -m pytest            # runs neurofm's conformance kit (neurofm.testing) on the plugin
neurofm plugins             # lists $name as loaded
```

## Use

$usage

The options of `$config` (in `$package/$module.py`) are the fields of its `$name` entry in a
model config; unknown fields are rejected.
"""

INIT = '''\
"""neurofm plugin package: $kind_singular `$name`."""

from $package.$module import $config, $cls

__all__ = ["$config", "$cls"]
'''

GITIGNORE = """\
__pycache__/
*.egg-info/
build/
dist/
.pytest_cache/
"""

COMMON = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    ".gitignore": GITIGNORE,
    "$package/__init__.py": INIT,
}

# -- modality ---------------------------------------------------------------------------------

MODALITY_MODULE = '''\
"""A modality encoder for a ``[T, channels]`` time series.

Registered as `$name` (entry-point group `neurofm.modalities`).
"""

from __future__ import annotations

from typing import Literal

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import series_tokens
from pydantic import Field
from torch import Tensor, nn

__all__ = ["$config", "$cls"]


class $config(PluginConfig):
    """Config of the `$name` encoder (its ``type`` tag is the registered name)."""

    type: Literal["$name"] = "$name"
    channels: int = Field(1, ge=1, description="channels C of the stream [T, C]")
    patch_samples: int = Field(4, ge=1, description="consecutive samples per token")


class $cls(ModalityEncoder):
    """Temporal patches of the stream -> tokens.

    Each patch of ``patch_samples`` samples (values and validity flags) goes through a small MLP;
    patches without a valid sample give no token.

    Shape:
        stream.values ``[T, C]`` -> tokens features ``[ceil(T / patch_samples), d_model]``,
        times ``[ceil(T / patch_samples), 2]`` (start, end in seconds).
    """

    Config = $config
    # "stimulus", "behaviour" or "neural": tasks choose streams by role, so the stream takes part
    # in every task (e.g. it is decoded in "behaviour_from_responses") without new code.
    role = "behaviour"
    # how the data pipeline normalises the stream with its train-tier statistics
    normalization = "zscore"

    def __init__(self, config: $config, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        width = 2 * config.patch_samples * config.channels  # values and validity flags
        self.embed = nn.Sequential(
            nn.Linear(width, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        return series_tokens(self.embed, c.channels, c.patch_samples, stream, c.type)
'''

MODALITY_TEST = '''\
"""neurofm's conformance kit on the encoder, and one behaviour test.

Plugin: `$name`.
"""

from __future__ import annotations

import torch
from neurofm import StreamTensor
from neurofm.testing import check_modality, check_plugin

from $package.$module import $config, $cls


def test_conforms() -> None:
    check_modality($cls, $config())
    check_modality($cls, $config(channels=3, patch_samples=2))


def test_found_through_its_entry_point() -> None:
    check_plugin("modalities", "$name")


def test_one_token_per_patch() -> None:
    encoder = $cls($config(channels=2, patch_samples=4), d_model=16)
    times = torch.arange(10) / 20.0
    stream = StreamTensor(torch.randn(10, 2), torch.ones(10, 2, dtype=torch.bool), times, 0.05)
    tokens = encoder.tokenize(stream)
    assert tokens.features.shape == (3, 16)
    assert torch.allclose(tokens.times[0], torch.tensor([0.0, 0.2]))
'''

MODALITY_USAGE = """\
Give a stream of your sessions to the encoder in a model config (the stream's `modality` in the
session manifest is `$name`):

```yaml
model:
  modalities:
    lfp: {type: $name, channels: 1, patch_samples: 4}
  heads:
    lfp: {type: regression}        # optional: make the stream a prediction target too
```"""

MODALITY = {
    "$package/$module.py": MODALITY_MODULE,
    "tests/test_$module.py": MODALITY_TEST,
}

# -- readout ----------------------------------------------------------------------------------

READOUT_MODULE = '''\
"""A readout with learned neuron embeddings and a learned gain per session.

Registered as `$name` (entry-point group `neurofm.readouts`).
"""

from __future__ import annotations

from typing import Literal

import torch
from neurofm import PluginConfig, Readout, SessionUnits
from pydantic import Field
from torch import Tensor, nn

__all__ = ["$config", "$cls"]


class $config(PluginConfig):
    """Config of the `$name` readout (its ``type`` tag is the registered name)."""

    type: Literal["$name"] = "$name"
    init_std: float = Field(0.02, gt=0, description="scale of the initial neuron embeddings")


class $cls(Readout):
    """Per-session neuron embeddings ``e_n`` and a per-session gain ``g_s``.

    A neuron's input identity is ``e_n``; its output parameter ``j`` at backbone output ``h`` is
    ``g_s <W_j h, e_n> / sqrt(d) + b_nj``.

    ``neurofm.Readout`` builds it: it stores ``config``, ``d_model`` and ``params_per_unit``,
    calls ``build_shared`` once, then ``add_session`` for every session the model knows (and for
    each session added later by fine-tuning), and keeps the list of sessions.

    Shape:
        unit_embeddings(session, units ``[K]``) -> ``[K, d_model]``;
        project(h ``[Q, d_model]``, session, units ``[K]``) -> ``[Q, K, params_per_unit]``.
    """

    Config = $config

    def build_shared(self) -> None:
        """What every session shares, and the empty per-session tables."""
        self.query = nn.Linear(self.d_model, self.d_model * self.params_per_unit)
        self.embeddings = nn.ParameterDict()  # per session, by key: [N, d_model]
        self.biases = nn.ParameterDict()  # [N, params_per_unit]
        self.gains = nn.ParameterDict()  # [] (one number)

    def add_session(self, key: str, units: SessionUnits) -> None:
        """One new session's parameters, stored under ``key`` (names cannot contain ".")."""
        n, std = units.count, self.config.init_std
        self.embeddings[key] = nn.Parameter(torch.randn(n, self.d_model) * std)
        self.biases[key] = nn.Parameter(torch.zeros(n, self.params_per_unit))
        self.gains[key] = nn.Parameter(torch.ones(()))

    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        return self.embeddings[self.checked_key(session_id)][units]

    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        key = self.checked_key(session_id)
        q = self.query(h).unflatten(-1, (self.params_per_unit, self.d_model))  # [Q, p, d]
        drive = torch.einsum("qpd,kd->qkp", q, self.unit_embeddings(session_id, units))
        return self.gains[key] * drive / self.d_model**0.5 + self.biases[key][units]
'''

READOUT_TEST = '''\
"""neurofm's conformance kit on the readout, and one behaviour test.

Plugin: `$name`.
"""

from __future__ import annotations

import torch
from neurofm import SessionUnits
from neurofm.testing import check_plugin, check_readout

from $package.$module import $config, $cls


def test_conforms() -> None:
    check_readout($cls, $config())
    check_readout($cls, $config(), params_per_unit=1)


def test_found_through_its_entry_point() -> None:
    check_plugin("readouts", "$name")


def test_sessions_have_their_own_neurons() -> None:
    sessions = {"a": SessionUnits("a", 3), "b": SessionUnits("b", 5)}
    readout = $cls($config(), d_model=8, sessions=sessions)
    assert readout.project(torch.randn(2, 8), "b", torch.arange(5)).shape == (2, 5, 1)
    gain = readout.gains["b"]
    readout.add_sessions({"b": SessionUnits("b", 5), "c.1": SessionUnits("c.1", 2)})
    assert readout.known_sessions() == ["a", "b", "c.1"]
    assert readout.gains["b"] is gain  # a known session keeps its parameters
    assert readout.project(torch.randn(2, 8), "c.1", torch.arange(2)).shape == (2, 2, 1)
'''

READOUT_USAGE = """\
Choose the readout in a model config (one readout serves every per-unit stream):

```yaml
model:
  readout: {type: $name}
```"""

READOUT = {
    "$package/$module.py": READOUT_MODULE,
    "tests/test_$module.py": READOUT_TEST,
}

# -- head -------------------------------------------------------------------------------------

HEAD_MODULE = '''\
"""A regression head with a robust (Huber) loss.

Registered as `$name` (entry-point group `neurofm.heads`).
"""

from __future__ import annotations

from typing import Literal

import torch
from neurofm import Head, PluginConfig
from pydantic import Field
from torch import Tensor
from torch.nn import functional

__all__ = ["$config", "$cls"]


class $config(PluginConfig):
    """Config of the `$name` head (its ``type`` tag is the registered name)."""

    type: Literal["$name"] = "$name"
    delta: float = Field(
        1.0, gt=0, description="Huber threshold (normalised units); below it the loss is squared"
    )


class $cls(Head):
    """Predicts normalised values of a target stream; Huber loss, robust to outliers.

    Shape: raw ``[Q, C, 1]`` -> prediction ``[Q, C]``; ``loss(raw, target [Q, C], valid [Q, C])``
    -> (sum over valid entries, number of valid entries).
    """

    Config = $config
    params_per_channel = 1

    def predict(self, raw: Tensor) -> Tensor:
        return raw[..., 0]

    def loss(self, raw: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        target = torch.where(valid, target, 0.0)  # invalid entries may hold anything, even NaN
        error = functional.huber_loss(
            raw[..., 0], target, reduction="none", delta=self.config.delta
        )
        return (error * valid).sum(), valid.sum()
'''

HEAD_TEST = '''\
"""neurofm's conformance kit on the head, and one behaviour test.

Plugin: `$name`.
"""

from __future__ import annotations

import torch
from neurofm.testing import check_head, check_plugin

from $package.$module import $config, $cls


def test_conforms() -> None:
    check_head($cls, $config())
    check_head($cls, $config(delta=0.5), channels=1)


def test_found_through_its_entry_point() -> None:
    check_plugin("heads", "$name")


def test_loss_is_linear_for_large_errors() -> None:
    head = $cls($config(delta=1.0), d_model=4, channels=1)
    raw = torch.zeros(1, 1, 1)
    total, count = head.loss(raw, torch.full((1, 1), 10.0), torch.ones(1, 1, dtype=torch.bool))
    assert float(total) == 9.5 and int(count) == 1
'''

HEAD_USAGE = """\
Give the head to a target stream in a model config:

```yaml
model:
  heads:
    running: {type: $name, delta: 1.0}
```"""

HEAD = {
    "$package/$module.py": HEAD_MODULE,
    "tests/test_$module.py": HEAD_TEST,
}
