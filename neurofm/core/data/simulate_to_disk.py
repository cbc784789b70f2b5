"""Write the simulated mouse V1 dataset in the session format (``neurofm simulate``)."""

from __future__ import annotations

import re
from pathlib import Path

from neurofm.core.data.session import UnitTable
from neurofm.core.data.simulation import SimulationConfig, simulate_session
from neurofm.core.data.writer import StreamInput, write_session
from neurofm.core.progress import progress as progress_bar
from neurofm.core.storage.files import atomic_directory, atomic_write_text, remove_stale_temporaries
from neurofm.errors import DiskFullError

__all__ = ["simulate_to_disk"]

_PER_UNIT = {"calcium", "spikes"}


def simulate_to_disk(
    out: str | Path,
    config: SimulationConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Simulate every session of ``config`` and write them as session folders under ``out``.

    The whole dataset appears at once: it is built in a temporary folder beside ``out`` and
    renamed into place, so an interrupted run leaves no partial dataset. The config used is saved
    as ``out/simulation.json``. With ``overwrite``, the temporaries of killed earlier writes of
    ``out`` are removed once the new dataset is in place.
    """
    config = config or SimulationConfig()
    out = Path(out)
    jobs = [(a, s) for a in range(config.n_animals) for s in range(config.sessions_per_animal)]
    try:
        _write_all(out, config, jobs, overwrite=overwrite, progress=progress)
    except DiskFullError as exc:  # name the dataset's folder, not the temporary one it fills
        raise DiskFullError(_TEMPORARY.sub(out.name, str(exc))) from None
    if overwrite:  # the copies an earlier, interrupted overwrite kept are replaced now
        remove_stale_temporaries(out.parent, (out.name,))
    return out


_TEMPORARY = re.compile(r"\.[^/]+\.partial-\d+-[^/]+")


def _write_all(
    out: Path,
    config: SimulationConfig,
    jobs: list[tuple[int, int]],
    *,
    overwrite: bool,
    progress: bool,
) -> None:
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for animal, index in progress_bar(
            jobs, desc="simulating sessions", enabled=progress, unit="session"
        ):
            sim = simulate_session(config, animal, index)
            streams = {
                name: StreamInput(
                    modality=s.modality,
                    data=s.data,
                    timestamps=s.timestamps,
                    per_unit=name in _PER_UNIT,
                    channel_names=s.channel_names,
                )
                for name, s in sim.streams.items()
            }
            truth = {k: v for k, v in sim.ground_truth.items() if v.dtype.kind in "fiub"}
            write_session(
                tmp,
                session_id=sim.session_id,
                animal_id=sim.animal_id,
                species=sim.species,
                streams=streams,
                intervals=sim.intervals,
                units=UnitTable(
                    sim.unit_ids,
                    sim.unit_position_um,
                    sim.unit_area,
                    sim.ground_truth["scan_offset_s"].astype("float64")
                    if config.apply_scan_offsets
                    else None,
                ),
                ground_truth=truth,
                attributes={"simulated": True, "seed": config.seed},
            )
        atomic_write_text(tmp / "simulation.json", config.model_dump_json(indent=2) + "\n")
