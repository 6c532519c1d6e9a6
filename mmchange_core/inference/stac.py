"""``predict --stac``: the STAC Item of each predicted pair, beside its mask (``<mask stem>.stac.json``).

The Item itself is :func:`mmchange_core.io.stac.write_stac_item`; this module picks its path, the
model fields (checkpoint name and sha256, threshold, tile size, overlap, mmchange version), the
georeference of the inputs and the assets a pair's result lists, and keeps the assets in step when
the CLI adds a report or drops a temporary probability map afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmchange_core.environment import __version__
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.geo import GeoReference
from mmchange_core.io.raster import open_source
from mmchange_core.io.stac import model_properties, output_asset, require_pystac, write_stac_item

#: Ending of an Item's file name: ``change.tif`` -> ``change.stac.json``.
STAC_SUFFIX = ".stac.json"


def stac_item_path(mask: Path) -> Path:
    """Where the Item of the pair whose mask is ``mask`` goes: ``<mask stem>.stac.json`` beside it."""
    return mask.with_name(f"{mask.stem}{STAC_SUFFIX}")


def require_stac() -> None:
    """Fail before any work, in one line naming the extra, when pystac is missing."""
    require_pystac("--stac")


def model_fields(checkpoint: str | Path, detector: Any) -> dict[str, Any]:
    """The ``mmchange:*`` model fields of a run: the checkpoint file (name, sha256) and the window settings."""
    settings = {"threshold": detector.threshold, "tile_size": detector.tile_size, "overlap": detector.overlap,
                "mmchange_version": __version__}
    trained = getattr(detector.meta, "mmchange_version", None)
    path = Path(checkpoint) if not str(checkpoint).startswith("hf://") else None
    if path is not None and path.is_file():
        return model_properties(path, **settings, checkpoint_mmchange_version=trained)
    # an hf:// spec: its name is the reference (the resolved file is the hub cache's business)
    return {"checkpoint": str(checkpoint), "checkpoint_sha256": None, **settings,
            "checkpoint_mmchange_version": trained}


def pair_georef(*inputs: str | Path) -> GeoReference | None:
    """The georeference of a pair (the first input that has one; ``None``: no footprint in the Item)."""
    for path in inputs:
        with open_source(path) as source:
            if source.georef is not None:
                return source.georef
    return None


def write_pair_item(result: Any, path: Path, model: Mapping[str, Any]) -> Path:
    """Write the Item of one pair's result (a ``PairResult``) to ``path``: inputs, model, every output."""
    image_a, image_b = Path(result.image_a), Path(result.image_b)
    return write_stac_item(path, name=result.name, inputs=[image_a, image_b], georef=pair_georef(image_a, image_b),
                           model=model, assets={k: Path(v) for k, v in result.outputs.items()},
                           properties={"mmchange:changed_pixels": int(result.changed_pixels),
                                       "mmchange:change_fraction": float(result.change_fraction)},
                           shape=(result.height, result.width))


def sync_item_assets(path: str | Path, outputs: Mapping[str, str | Path]) -> Path:
    """Make the output assets of the Item at ``path`` exactly ``outputs`` (kind -> file); inputs are kept.

    The CLI calls it after writing a report or colour bar, or dropping a temporary probability map.
    """
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assets = {key: value for key, value in data.get("assets", {}).items() if "source" in value.get("roles", [])}
    georeferenced = data.get("geometry") is not None
    for kind, output in outputs.items():
        assets[kind] = output_asset(kind, output, path.parent, georeferenced)
    data["assets"] = assets
    return atomic_write_text(path, json.dumps(data, indent=2) + "\n")
