"""``predict --stac``: the STAC Item of each predicted pair, beside its mask (``<mask stem>.stac.json``).

The Item itself is :func:`mmchange_core.io.stac.write_stac_item`; this module picks its path, the
model fields (checkpoint name and sha256, threshold, tile size, overlap, mmchange version), the
georeference of the inputs, the pair's summary in words and its figures (per class for a K-class network,
whose mask asset lists its classes), and the assets a pair's result lists (written last, by predict, so it
never needs a rewrite).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmchange_core.environment import __version__
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.geo import GeoReference
from mmchange_core.io.raster import read_georeference
from mmchange_core.io.stac import require_pystac, write_stac_item

#: Ending of an Item's file name: ``change.tif`` -> ``change.stac.json``.
STAC_SUFFIX = ".stac.json"


def stac_item_path(mask: Path) -> Path:
    """Where the Item of the pair whose mask is ``mask`` goes: ``<mask stem>.stac.json`` beside it."""
    return mask.with_name(f"{mask.stem}{STAC_SUFFIX}")


def require_stac() -> None:
    """Fail before any work, in one line naming the extra, when pystac is missing."""
    require_pystac("--stac")


def model_fields(detector: Any) -> dict[str, Any]:
    """The ``mmchange:*`` model fields of a run: the checkpoint (as given, its file name and sha256) and the
    settings it ran with (:meth:`ChangeDetector.record`), as metrics.json and the manifest write them."""
    model = detector.model_file
    return {**detector.record(),
            "checkpoint_file": model.path.name if model is not None else None,
            "checkpoint_sha256": model.sha256() if model is not None else None,
            "mmchange_version": __version__,
            "checkpoint_mmchange_version": getattr(detector.meta, "mmchange_version", None)}


def pair_georef(*inputs: str | Path) -> GeoReference | None:
    """The georeference of a pair (the first input that has one; ``None``: no footprint in the Item)."""
    for path in inputs:
        georef = read_georeference(path)
        if georef is not None:
            return georef
    return None


def write_pair_item(result: Any, path: Path, model: Mapping[str, Any],
                    extra: Mapping[str, str | Path] | None = None, classes: ClassScheme | None = None) -> Path:
    """Write the Item of one pair's result (a ``PairResult``) to ``path``: inputs, model, every output, and
    ``extra`` assets drawn from several pairs (the run's report). ``classes`` (a K-class network): the mask is
    its class raster, listed with the classification extension."""
    image_a, image_b = Path(result.image_a), Path(result.image_b)
    assets = {k: Path(v) for k, v in {**result.outputs, **(extra or {})}.items()}
    properties = {"mmchange:changed_pixels": int(result.changed_pixels),
                  "mmchange:change_fraction": float(result.change_fraction),
                  **summary_properties(getattr(result, "summary", None))}
    return write_stac_item(path, name=result.name, inputs=[image_a, image_b], georef=pair_georef(image_a, image_b),
                           model=model, assets=assets, properties=properties, shape=(result.height, result.width),
                           classes=classes)


def summary_properties(summary: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``mmchange:*`` Item properties of a pair's summary in words (a ``ChangeSummary.to_dict()``): the text,
    the changed area in m² (projected CRS only), the change regions, the largest one, a generated sentence and
    (K-class networks) the changed area of each class; none for a pair finished by an older mmchange (no
    summary)."""
    if summary is None:
        return {}
    properties = {"mmchange:summary": summary["text"], "mmchange:change_percent": float(summary["percent"]),
                  "mmchange:polygons": int(summary["polygons"])}
    if summary["area_unit"] == "m2" and summary["area"] is not None:
        properties["mmchange:changed_area_m2"] = float(summary["area"])
    if summary["largest"] is not None:
        properties["mmchange:largest_change"] = summary["largest"]
    if summary.get("generated"):
        properties["mmchange:generated_description"] = summary["generated"]
    if summary.get("classes") is not None:
        properties["mmchange:class_areas"] = summary["classes"]
    return properties
