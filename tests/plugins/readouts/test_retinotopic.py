"""The stimulus path: positioned features, the retinotopic readout, and how a model refuses or
falls back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import WindowSampler, load_window
from neurofm.core.interfaces import SessionUnits
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import get_task
from neurofm.plugins.readouts.retinotopic import RetinotopicConfig, RetinotopicReadout
from neurofm.testing import check_modality, check_plugin


def _config(**changes) -> ModelConfig:
    data = default_model_config("tiny", frame_size=(18, 32), stimulus_path=True).model_dump()
    for key, value in changes.items():
        data[key] = value
    return ModelConfig.model_validate(data)


def _batch(sessions, model, n=4, window=1.0, seed=0):
    sampler = WindowSampler(sessions, window, seed=seed)
    return [
        load_window(sessions[i], t0, window, model.normalization()) for i, t0 in sampler.draw(n)
    ]


def test_stimulus_path_model_reads_the_stimulus_at_each_neurons_place(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(
        default_model_config("tiny", frame_size=(18, 32), stimulus_path=True), sessions
    )
    assert model.reads_stimulus
    batch = _batch(sessions, model)
    task = get_task("responses_from_stimulus")
    out = model(batch, [task] * len(batch))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    key = model.readout.parameter_key(batch[0].session_id)
    # the stimulus path carries gradient to the core and to the neurons' read-out places
    assert model.encoder("movie").core.spatial[0].weight.grad.abs().sum() > 0
    assert model.readout.logits[key].grad.abs().sum() > 0
    assert model.readout.retinotopy[key].grad.abs().sum() > 0


def test_only_the_stimulus_moves_where_neurons_read(tiny_data: Path) -> None:
    # the identity reads the screen position without its gradient: a task without the stimulus
    # trains the identity (through the feature weights and residuals) but not the positions
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(_config(), sessions)
    batch = _batch(sessions, model)
    model(batch, [get_task("forecast")] * len(batch)).loss.backward()
    readout = model.readout
    keys = {readout.parameter_key(w.session_id) for w in batch}
    assert all(readout.retinotopy[k].grad is None or not readout.retinotopy[k].grad.any()
               for k in keys)  # fmt: skip
    assert all(readout.delta[k].grad is None or not readout.delta[k].grad.any() for k in keys)
    assert any(readout.residual[k].grad.abs().sum() > 0 for k in keys)
    assert any(readout.weights[k].grad.abs().sum() > 0 for k in keys)


def test_core_runs_once_per_batch(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = build_model(_config(), sessions)
    calls = []
    model.encoder("movie").core.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    batch = _batch(sessions, model, n=5)
    model(batch, [get_task("responses_from_stimulus_behaviour")] * len(batch))
    assert len(calls) == 1 and calls[0][0] == 5  # one call, all five samples


def test_a_sample_without_the_stimulus_uses_the_context_path(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(_config(), sessions).eval()
    batch = _batch(sessions, model, n=2)
    forecast = get_task("forecast")  # no stimulus visible
    with_movie = get_task("forecast_with_stimulus_behaviour")
    with torch.no_grad():
        plain = model(batch, [forecast] * 2).targets[0]
        seen = model(batch, [with_movie] * 2).targets[0]
    assert plain.raw.shape == seen.raw.shape
    assert not torch.allclose(plain.raw, seen.raw)
    # a sample whose session lacks the movie stream altogether still trains
    stripped = [dataclasses.replace(w, streams={k: v for k, v in w.streams.items() if k != "movie"})
                for w in batch]  # fmt: skip
    out = model.train()(stripped, [get_task("responses_from_stimulus_behaviour")] * 2)
    assert torch.isfinite(out.loss) and out.targets


def test_refused_without_positioned_features(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    tubelets = {"type": "movie", "height": 18, "width": 32, "patch_height": 6, "patch_width": 8}
    data = _config().model_dump()
    data["modalities"]["movie"] = tubelets
    with pytest.raises(ValueError, match=r"retinotopic.*positioned.*movie_core"):
        build_model(ModelConfig.model_validate(data), sessions)
    # assembled by hand: the model names both plugins
    from neurofm import NeuroFM, PerceiverIO, get_preset
    from neurofm.plugins.heads.poisson import PoissonConfig, PoissonHead
    from neurofm.plugins.modalities.calcium import CalciumConfig, CalciumEncoder
    from neurofm.plugins.modalities.movie import MovieConfig, MovieEncoder

    units = {"s": SessionUnits("s", 3)}
    with pytest.raises(ValueError, match=r"readout plugin 'retinotopic'.*modality plugin 'movie'"):
        NeuroFM(
            encoders={"movie": MovieEncoder(MovieConfig(**{k: v for k, v in tubelets.items()
                                                           if k != "type"}), d_model=32),
                      "calcium": CalciumEncoder(CalciumConfig(), d_model=32)},
            backbone=PerceiverIO(get_preset("tiny")),
            readout=RetinotopicReadout(RetinotopicConfig(), d_model=32, sessions=units,
                                       feature_channels=8),
            heads={"calcium": PoissonHead(PoissonConfig(), d_model=32, channels=None)},
        )  # fmt: skip


def test_sessions_without_positions_learn_them_freely() -> None:
    free = SessionUnits("free", 6)  # no cortical coordinates
    located = SessionUnits("located", 6, np.random.default_rng(0).uniform(0, 400, (6, 3)))
    readout = RetinotopicReadout(
        RetinotopicConfig(), d_model=16, sessions={"free": free, "located": located},
        feature_channels=3,
    )  # fmt: skip
    spread = readout.screen_positions("free").std(0)
    assert bool((spread > 0.05).all())  # spread over the screen, not piled at the centre
    assert not readout._located["free"] and readout._located["located"]
    # a session added later starts from the mean map of the known ones (zero-shot positions)
    with torch.no_grad():
        readout.retinotopy["located"].add_(0.3)
    readout.add_sessions({"new": SessionUnits("new", 2, np.zeros((2, 3)))})
    mean = (readout.retinotopy["located"] + readout.retinotopy["free"]).detach() / 2
    assert torch.allclose(readout.retinotopy["new"], mean)


def test_gaze_shifts_where_neurons_read(tiny_data: Path) -> None:
    from neurofm.core.interfaces import FeatureMap, StimulusView

    readout = RetinotopicReadout(
        RetinotopicConfig(), d_model=16, sessions={"s": SessionUnits("s", 4)}, feature_channels=2
    )
    with torch.no_grad():
        readout.shifter["s"].copy_(torch.eye(2) * 0.5)
    values = torch.randn(6, 2, 9, 16)
    fmap = FeatureMap(values, torch.arange(6) / 30.0, 1 / 30.0)
    h, units, times = torch.randn(3, 16), torch.arange(4), torch.tensor([0.05, 0.1, 0.15])
    still = readout.project_stimulus(h, "s", units, times, [StimulusView(fmap, torch.zeros(6, 2))])
    none = readout.project_stimulus(h, "s", units, times, [StimulusView(fmap)])
    moved = readout.project_stimulus(h, "s", units, times, [StimulusView(fmap, torch.ones(6, 2))])
    assert torch.allclose(still, none, atol=1e-5)
    assert not torch.allclose(moved, none, atol=1e-3)


def test_third_party_positioned_encoder_serves_the_readout(third_party_plugins, tiny_data: Path):
    check_plugin("modalities", "acme.retina")
    from neurofm_acme.retina import RetinaConfig, RetinaEncoder

    check_modality(RetinaEncoder, RetinaConfig(height=18, width=32, pool=3))
    sessions = open_dataset(tiny_data)
    data = _config().model_dump()
    data["modalities"]["movie"] = {"type": "acme.retina", "height": 18, "width": 32}
    model = build_model(ModelConfig.model_validate(data), sessions)
    assert model.readout.feature_channels == 2
    batch = _batch(sessions, model)
    out = model(batch, [get_task("responses_from_stimulus")] * len(batch))
    out.loss.backward()
    key = model.readout.parameter_key(batch[0].session_id)
    assert model.readout.weights[key].grad.abs().sum() > 0


def test_refused_when_feature_channels_differ() -> None:
    from neurofm import NeuroFM, PerceiverIO, get_preset
    from neurofm.plugins.heads.poisson import PoissonConfig, PoissonHead
    from neurofm.plugins.modalities.calcium import CalciumConfig, CalciumEncoder
    from neurofm.plugins.modalities.movie_core import MovieCoreConfig, MovieCoreEncoder

    movie = MovieCoreEncoder(MovieCoreConfig(height=18, width=32), d_model=32)
    units = {"s": SessionUnits("s", 3)}
    with pytest.raises(ValueError, match=r"feature maps of 16 channels.*built for 4"):
        NeuroFM(
            encoders={"movie": movie, "calcium": CalciumEncoder(CalciumConfig(), d_model=32)},
            backbone=PerceiverIO(get_preset("tiny")),
            readout=RetinotopicReadout(RetinotopicConfig(), d_model=32, sessions=units,
                                       feature_channels=4),
            heads={"calcium": PoissonHead(PoissonConfig(), d_model=32, channels=None)},
        )  # fmt: skip


def test_the_context_alone_and_beside_the_stimulus_are_two_projections(tiny_data: Path) -> None:
    # a task without the stimulus trains the context projection only, one with it the
    # modulation only (the stimulus tasks' gain and offset are theirs)
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(_config(), sessions)
    readout = model.readout
    batch = _batch(sessions, model)
    model(batch, [get_task("forecast")] * len(batch)).loss.backward()
    assert readout.context.weight.grad.abs().sum() > 0
    assert readout.modulation.weight.grad is None
    model.zero_grad(set_to_none=True)
    model(batch, [get_task("responses_from_stimulus_behaviour")] * len(batch)).loss.backward()
    assert readout.context.weight.grad is None
    assert readout.modulation.weight.grad.abs().sum() > 0
    # a mixed batch trains both, and each sample's output is what it is alone
    tasks = [get_task("forecast_with_stimulus_behaviour"), get_task("forecast")] * 2
    model.eval()
    with torch.no_grad():
        mixed = model(batch, tasks).targets
        alone = [model([w], [t]).targets[0] for w, t in zip(batch, tasks, strict=True)]
    for m, a in zip(mixed, alone, strict=True):
        assert torch.allclose(m.raw, a.raw, atol=1e-5)


def test_weights_with_one_context_projection_load_into_both_roles() -> None:
    # weights saved when one projection served both roles (d * (p + 1) outputs, no modulation)
    units = {"s": SessionUnits("s", 5, np.random.default_rng(0).uniform(0, 400, (5, 3)))}
    readout = RetinotopicReadout(RetinotopicConfig(), d_model=8, sessions=units,
                                 feature_channels=3)  # fmt: skip
    state = readout.state_dict()
    one = torch.randn(16, 8), torch.randn(16)
    state["context.weight"], state["context.bias"] = one
    del state["modulation.weight"], state["modulation.bias"]
    readout.load_state_dict(state)
    assert torch.equal(readout.modulation.weight, one[0])
    assert torch.equal(readout.modulation.bias, one[1])
    assert torch.equal(readout.context.weight, one[0][:8])
    assert torch.equal(readout.context.bias, one[1][:8])


def test_weights_without_squared_features_load_with_zero_weights_on_the_squares() -> None:
    from neurofm.core.interfaces import FeatureMap, StimulusView

    units = {"s": SessionUnits("s", 5, np.random.default_rng(0).uniform(0, 400, (5, 3)))}
    old = RetinotopicReadout(RetinotopicConfig(squared_features=False), d_model=8,
                             sessions=units, feature_channels=3)  # fmt: skip
    with torch.no_grad():
        for p in (old.shared_weights, old.weights["s"], old.identity.weight):
            p.normal_()
    new = RetinotopicReadout(RetinotopicConfig(squared_features=True), d_model=8, sessions=units,
                             feature_channels=3)  # fmt: skip
    assert new.weights["s"].shape == (5, 6)  # each channel and its square
    new.load_state_dict(old.state_dict())
    assert not new.weights["s"][:, 3:].any() and not new.shared_weights[3:].any()
    fmap = FeatureMap(torch.randn(6, 3, 9, 16), torch.arange(6) / 10.0, 0.1)
    args = torch.randn(4, 8), "s", torch.arange(5), torch.tensor([0.1, 0.2, 0.3, 0.5])
    view = [StimulusView(fmap, torch.randn(6, 2))]
    assert torch.allclose(new.project_stimulus(*args, view), old.project_stimulus(*args, view))


def test_squared_features_drive_phase_invariant_neurons() -> None:
    # a feature and its sign flip (the same pattern in opposite phase) drive a neuron alike
    # through the weights on the squares, and not at all through the weights on the features
    from neurofm.core.interfaces import FeatureMap, StimulusView

    units = {"s": SessionUnits("s", 1)}
    readout = RetinotopicReadout(RetinotopicConfig(filter_s=0, squared_features=True), d_model=8,
                                 sessions=units, feature_channels=2)  # fmt: skip
    with torch.no_grad():
        readout.weights["s"].zero_()
        readout.weights["s"][0, 2] = 1.0  # the square of channel 0
    pattern = torch.randn(1, 2, 9, 16)
    args = torch.zeros(1, 8), "s", torch.arange(1), torch.tensor([0.0])
    on, off = (readout.project_stimulus(*args, [StimulusView(FeatureMap(x, torch.zeros(1), 0.1))])
               for x in (pattern, -pattern))  # fmt: skip
    flat = readout.project_stimulus(
        *args, [StimulusView(FeatureMap(torch.zeros(1, 2, 9, 16), torch.zeros(1), 0.1))]
    )
    assert torch.allclose(on, off) and not torch.allclose(on, flat, atol=1e-3)


def test_sessions_of_one_animal_share_their_map() -> None:
    rng = np.random.default_rng(0)

    def located(sid: str, animal: str | None) -> SessionUnits:
        return SessionUnits(sid, 5, rng.uniform(0, 400, (5, 3)), None, animal)

    units = {s: located(s, a) for s, a in (("a1", "m.a"), ("a2", "m.a"), ("b1", "b"), ("x", None))}
    shared = RetinotopicConfig(map_sharing="animal")
    readout = RetinotopicReadout(shared, d_model=8, sessions=units, feature_channels=3)
    assert sorted(readout.animal_map) == ["b", "m%2Ea"]  # one map per animal ("." escaped)
    before = {s: readout.screen_positions(s) for s in units}
    with torch.no_grad():
        readout.animal_map["m%2Ea"].copy_(torch.tensor([[0.03, 0.0], [0.0, -0.03]]))
    moved = {s: not torch.allclose(readout.screen_positions(s), before[s]) for s in units}
    assert moved == {"a1": True, "a2": True, "b1": False, "x": False}
    # each session keeps its own translation
    before_move = {s: readout.screen_positions(s) for s in ("a1", "a2")}
    with torch.no_grad():
        readout.retinotopy["a2"][:, 2] = 0.01
    assert torch.equal(readout.screen_positions("a1"), before_move["a1"])
    assert not torch.allclose(readout.screen_positions("a2"), before_move["a2"])
    # a later session of a known animal reads with that animal's map; a new animal's map starts
    # from the mean of the known sessions' maps
    readout.add_sessions({"a3": located("a3", "m.a"), "c1": located("c1", "c")})
    assert torch.equal(readout._map("a3")[:, :2], readout.animal_map["m%2Ea"])
    known = torch.stack([readout._map(k) for k in ("a1", "a2", "b1", "x")]).mean(0)
    assert torch.allclose(readout.animal_map["c"], known[:, :2])
    # per-session maps on request; sessions without positions never get an animal map
    alone = RetinotopicReadout(RetinotopicConfig(), d_model=8, sessions=units, feature_channels=3)
    assert len(alone.animal_map) == 0  # the default: one map per session
    free = RetinotopicReadout(shared, d_model=8, feature_channels=3,
                              sessions={"f": SessionUnits("f", 4, None, None, "m")})  # fmt: skip
    assert len(free.animal_map) == 0


def test_animal_maps_and_squared_features_travel_with_the_checkpoint(
    tiny_data: Path, tmp_path: Path
) -> None:
    from neurofm.core.model.neurofm import NeuroFM

    data = _config().model_dump()
    data["readout"].update(map_sharing="animal", squared_features=True)
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(data), sessions)
    assert sorted(model.readout.animal_map) == sorted({s.animal_id for s in sessions})
    model.save_pretrained(tmp_path / "model")
    loaded = NeuroFM.from_pretrained(tmp_path / "model")
    assert sorted(loaded.readout.animal_map) == sorted(model.readout.animal_map)
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)


def test_behaviour_gain_scales_the_stimulus_rate_per_neuron() -> None:
    # rate -> rate * exp(v_n . phi(x(t))): zero weights change nothing; a neuron with a weight
    # on running is driven more when the running stream is high, its neighbour without is not
    from neurofm.core.interfaces import FeatureMap, StimulusView

    config = RetinotopicConfig(filter_s=0, behaviour_gain_streams=["running", "pupil"])
    readout = RetinotopicReadout(config, d_model=8, sessions={"s": SessionUnits("s", 2)},
                                 feature_channels=2)  # fmt: skip
    assert readout.behaviour_streams == ("running", "pupil")
    with torch.no_grad():  # no context term: raw = bias + amplitude * rate * gain
        readout.modulation.bias.zero_()
    plain = RetinotopicReadout(RetinotopicConfig(filter_s=0), d_model=8,
                               sessions={"s": SessionUnits("s", 2)}, feature_channels=2)  # fmt: skip
    plain.load_state_dict(readout.state_dict(), strict=False)
    fmap = FeatureMap(torch.randn(3, 2, 9, 16), torch.arange(3) / 10.0, 0.1)
    args = torch.zeros(3, 8), "s", torch.arange(2), torch.tensor([0.0, 0.1, 0.2])

    def read(model, running: float) -> torch.Tensor:
        behaviour = torch.tensor([[running, 0.0]]).expand(3, 2)
        return model.project_stimulus(*args, [StimulusView(fmap, None, behaviour)])[..., 0]

    assert torch.allclose(read(readout, 2.0), read(plain, 2.0), atol=1e-6)  # weights start at 0
    with torch.no_grad():
        readout.behaviour_gain["s"][0, 0] = 1.0
    phi = (torch.tanh(2.0 * readout.gain_in + readout.gain_shift) * readout.gain_out).sum(-1)
    phi0 = (torch.tanh(readout.gain_shift) * readout.gain_out).sum(-1)
    bias = readout.bias["s"][:, 0]
    unknown = read(readout, float("nan"))  # a stream not known: no gain from it
    assert torch.allclose(unknown, read(plain, 0.0), atol=1e-6)
    for running, expected in ((2.0, phi[0]), (0.0, phi0[0])):
        drive = (read(readout, running) - bias) / (read(plain, running) - bias)
        torch.testing.assert_close(drive[:, 0], expected.exp().expand(3), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(drive[:, 1], torch.ones(3), rtol=1e-4, atol=1e-5)


def test_model_gives_the_readout_its_behaviour_streams(tiny_data: Path) -> None:
    # the streams' first channel at the feature map's times; NaN where a stream is not known
    sessions = open_dataset(tiny_data)
    data = _config().model_dump()
    data["readout"]["behaviour_gain_streams"] = ["running", "pupil"]
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(data), sessions)
    seen = []
    original = model.readout.project_stimulus_batch

    def spy(queries):
        seen.extend(v.behaviour for q in queries for v in q.stimulus)
        return original(queries)

    model.readout.project_stimulus_batch = spy
    batch = _batch(sessions, model, n=2)
    model(batch, [get_task("responses_from_stimulus_behaviour")] * 2)
    assert seen and all(b is not None and b.shape[1] == 2 for b in seen)
    assert all(b[:, 0].abs().sum() > 0 for b in seen)  # running, visible
    seen.clear()
    model(batch, [get_task("responses_from_stimulus")] * 2)  # behaviour hidden
    assert seen and all(b.isnan().all() for b in seen)
    seen.clear()
    model(batch, [get_task("causal_50_stimulus_behaviour")] * 2)  # known up to the cut
    assert seen and all(b.isnan().any() and b[0].isfinite().all() for b in seen)
    out = model(batch, [get_task("responses_from_stimulus_behaviour")] * 2)
    out.loss.backward()
    key = model.readout.parameter_key(batch[0].session_id)
    assert model.readout.behaviour_gain[key].grad.abs().sum() > 0
