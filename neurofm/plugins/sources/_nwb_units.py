"""The unit table of the NWB importer: ids, positions, areas and scan-phase offsets of the ROIs."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofm.core.data.session import UnitTable
from neurofm.core.data.sources import ImportSummary, SourceFormatError

__all__ = ["MASK_COLUMNS", "read_units"]

#: Mask columns of a PlaneSegmentation, in the order they are tried for positions.
MASK_COLUMNS = ("image_mask", "pixel_mask", "voxel_mask")
_UNIT_TO_UM = {"m": 1e6, "meter": 1e6, "meters": 1e6, "mm": 1e3, "millimeter": 1e3,
               "millimeters": 1e3, "um": 1.0, "µm": 1.0, "micrometer": 1.0, "micrometers": 1.0,
               "micron": 1.0, "microns": 1.0}  # fmt: skip


def _column(table: Any, name: str, rows: np.ndarray) -> np.ndarray:
    return np.asarray(table[name].data[:])[rows]


def _mask_centroid(table: Any, column: str, row: int) -> np.ndarray:
    """Weighted centroid ``[3]`` (x, y, z in pixels; z 0 for 2-D masks) of one ROI's mask."""
    mask = table[column][row]
    if column == "image_mask":
        weights = np.asarray(mask, float)
        grid = np.indices(weights.shape)  # [ndim, ...]: axis 0 rows (y), axis 1 columns (x)
        total = weights.sum() or 1.0
        centre = [(g * weights).sum() / total for g in grid]
        xyz = [centre[1], centre[0], centre[2] if len(centre) > 2 else 0.0]
        return np.asarray(xyz, float)
    entries = np.asarray([tuple(e) for e in mask], float)  # pixel (x, y, w) / voxel (x, y, z, w)
    if entries.size == 0:
        return np.zeros(3)
    weights = entries[:, -1]
    total = weights.sum() or 1.0
    coords = (entries[:, :-1] * weights[:, None]).sum(0) / total
    return np.pad(coords, (0, 3 - coords.shape[0]))


def _pixel_size_um(plane: Any) -> np.ndarray | None:
    """Micrometres per pixel along x, y (, z) from the imaging plane's grid spacing, if stated."""
    spacing = getattr(plane, "grid_spacing", None)
    unit = str(getattr(plane, "grid_spacing_unit", "") or "").strip().lower()
    if spacing is None or unit not in _UNIT_TO_UM:
        return None
    size = np.asarray(spacing, float).reshape(-1) * _UNIT_TO_UM[unit]
    return np.pad(size, (0, 3 - size.shape[0]), constant_values=0.0) if size.size < 3 else size[:3]


def read_units(
    rrs: Any, n: int, config: Any, sid: str, summary: ImportSummary, what: str
) -> UnitTable:
    """Ids, positions (µm), areas and offsets of the ROIs a RoiResponseSeries refers to.

    Ids: the first of ``config.unit_id_columns`` present, else the table's own ``id`` column.
    Positions: the first complete triple of ``config.centroid_columns`` (x, y[, z]), else a vector
    column of ``config.centroid_vector_columns``, else the weighted centroid of the first mask
    column present (``image_mask``, ``pixel_mask``, ``voxel_mask``) scaled by the imaging plane's
    ``grid_spacing`` when stated (else in pixels, recorded as a guess).
    """
    table = rrs.rois.table
    rows = np.asarray(rrs.rois.data[:], dtype=np.int64)
    if rows.shape[0] != n:
        raise SourceFormatError(
            f"{what}: {rrs.name} has {n} columns but references {rows.shape[0]} ROIs."
        )
    cols = list(table.colnames)
    used: set[str] = set()
    id_col = next((c for c in config.unit_id_columns if c in cols), None)
    if id_col is not None:
        used.add(id_col)
        ids = _column(table, id_col, rows).astype(np.int64)
    else:
        ids = np.asarray(table.id.data[:], np.int64)[rows]
    pos = np.zeros((n, 3))
    triple = next((t for t in config.centroid_columns if all(c in cols for c in t[:2])), None)
    vector = next((c for c in config.centroid_vector_columns if c in cols), None)
    mask = next((c for c in MASK_COLUMNS if c in cols), None)
    if triple is not None:
        present = [c for c in triple if c in cols]
        used |= set(present)
        for k, c in enumerate(present):
            pos[:, k] = _column(table, c, rows).astype(float)
    elif vector is not None:
        used.add(vector)
        values = _column(table, vector, rows).astype(float).reshape(n, -1)
        pos[:, : min(3, values.shape[1])] = values[:, :3]
    elif mask is not None:
        used.add(mask)
        pos = np.stack([_mask_centroid(table, mask, int(r)) for r in rows]) if n else pos
        size = _pixel_size_um(getattr(table, "imaging_plane", None))
        if size is not None:
            pos = pos * size
            summary.guess(
                f"{sid}/neuron positions", f"{mask} centroids x imaging-plane grid_spacing"
            )
        else:
            summary.guess(
                f"{sid}/neuron positions",
                f"{mask} centroids in pixels (the imaging plane states no grid_spacing)",
            )
    else:
        summary.skip(
            f"{sid}/neuron positions",
            f"no centroid columns ({config.centroid_columns}, {config.centroid_vector_columns}) "
            f"and no mask column {list(MASK_COLUMNS)}; set to 0",
        )
    plane = getattr(table, "imaging_plane", None)
    area_col = next((c for c in config.area_columns if c in cols), None)
    if area_col:
        used.add(area_col)
        area = _column(table, area_col, rows).astype(str)
    else:
        area = np.full(n, str(getattr(plane, "location", "unknown") or "unknown"))
    offset_col = next((c for c in config.time_offset_columns if c in cols), None)
    offsets = None
    if offset_col is not None:
        used.add(offset_col)
        offsets = _column(table, offset_col, rows).astype(np.float64)
    for c in cols:
        if c not in used:
            summary.skip(f"{sid}/{table.name} column {c!r}", "not used")
    return UnitTable(ids, pos, area, offsets)
