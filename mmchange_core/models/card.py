"""The model card (``README.md``) of an mmchange checkpoint shared on the Hugging Face Hub.

The card starts with the Hub's metadata block (YAML front matter: library, tags, datasets, license,
pipeline tag and, from an ``mmchange eval`` result, the ``model-index`` metrics), then says what the
model is, how it was trained and evaluated, how to load it, what it is for and not for, and how to
cite the paper. The metadata goes through huggingface_hub's ModelCardData, which writes the
``model-index`` layout the Hub parses.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmchange_core.config import to_dict
from mmchange_core.data.layouts import DATASET_ALIASES
from mmchange_core.errors import InputError
from mmchange_core.io.images import check_regular_file
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.hub import HUB_SCHEME, WEIGHTS_FILE, import_hub, is_hub_spec, parse_hub_spec
from mmchange_core.models.int8_record import int8_files

#: The certified int8 export and its record in a model repository (when the checkpoint has one).
INT8_FILES = tuple(path.name for path in int8_files(WEIGHTS_FILE))

#: The Hub task closest to a binary change mask (one label per pixel).
PIPELINE_TAG = "image-segmentation"
TAGS = ("change-detection", "remote-sensing", "mmchange", "pytorch", "safetensors", "earth-observation")
TEXT_TAGS = ("multimodal", "vision-language")
#: Metrics of ``mmchange eval`` (change class, one confusion matrix over all pixels) and their card names.
METRIC_LABELS = {"precision": "Precision", "recall": "Recall", "f1": "F1", "iou": "IoU",
                 "oa": "Overall accuracy", "kappa": "Cohen's kappa"}
#: Hub metric ids where they differ from mmchange's keys.
METRIC_TYPES = {"oa": "accuracy"}
#: Metrics of the change class; the others (OA, kappa) describe both classes.
CHANGE_CLASS_METRICS = ("precision", "recall", "f1", "iou")
PAPER_TITLE = ("Multimodal Feature Fusion Network with Text Difference Enhancement for Remote Sensing "
               "Change Detection")
PAPER_CODE = "https://github.com/yikuizhai/MMChange"
#: The paper as the authors list it (no venue or year is given in the text we have).
CITATION = f"""@misc{{zhou_mmchange,
  title  = {{{PAPER_TITLE}}},
  author = {{Zhou, Yijun and Zhai, Yikui and Ying, Zilu and Xian, Tingfeng and Zhou, Wenlve and
            Zhou, Zhiheng and Tian, Xiaolin and Jia, Xudong and Zhang, Hongsheng and Chen, C. L. Philip}},
  note   = {{MMChange; code: {PAPER_CODE}}}
}}"""


@dataclass(frozen=True)
class EvalSummary:
    """The part of an ``mmchange eval`` result that a model card reports."""

    metrics: dict[str, float]  # the METRIC_LABELS keys, fractions
    split: str
    dataset: str  # a display name: LEVIR-CD, WHU-CD, SYSU-CD or the dataset folder's name
    pairs: int | None = None
    threshold: float | None = None
    model: dict[str, Any] | None = None  # the model config the evaluation ran


def dataset_name(dataset: str | Path) -> str:
    """``LEVIR-CD`` for ``levir`` or a folder named LEVIR-CD (any case); else the folder's own name."""
    name = Path(str(dataset)).name or str(dataset)
    known = {alias.lower(): alias for alias in DATASET_ALIASES.values()}
    known.update((key, value) for key, value in DATASET_ALIASES.items())
    return known.get(name.lower(), name)


def _known_dataset(dataset: str) -> bool:
    return dataset in DATASET_ALIASES.values()


def read_eval_summary(path: str | Path) -> EvalSummary:
    """The metrics of ``mmchange eval``'s ``metrics.json`` (or its ``--json`` output); one-line errors."""
    path = Path(path)
    if path.exists():
        check_regular_file(path, "evaluation")  # a FIFO or device is refused, never opened (reading one blocks)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"evaluation file not found: {path}; pass the metrics.json of an 'mmchange eval' "
                         f"run folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not a readable JSON file ({exc}); pass the metrics.json of an "
                         f"'mmchange eval' run folder") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds no JSON object; pass the metrics.json of an 'mmchange eval' run folder")
    values = data.get("metrics", data)  # metrics.json nests them; 'mmchange eval --json' does not
    if not isinstance(values, dict):
        raise InputError(f"{path}: 'metrics' is not an object; pass the metrics.json of an 'mmchange eval' run")
    metrics: dict[str, float] = {}
    for key in METRIC_LABELS:
        value = values.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{path}: metric '{key}' is {value!r}, not a finite number")
        metrics[key] = float(value)
    if "f1" not in metrics:
        raise InputError(f"{path} has no 'f1' metric, so it is not an 'mmchange eval' result; pass the "
                         f"metrics.json of an eval run folder")
    model = data.get("model")
    pairs, threshold = data.get("pairs"), data.get("threshold")
    return EvalSummary(metrics=metrics, split=str(data.get("split") or "test"),
                       dataset=dataset_name(str(data.get("dataset") or "unknown")),
                       pairs=pairs if isinstance(pairs, int) and not isinstance(pairs, bool) else None,
                       threshold=float(threshold) if isinstance(threshold, (int, float)) else None,
                       model=model if isinstance(model, dict) else None)


def check_eval_matches(summary: EvalSummary, meta: CheckpointMeta, source: str | Path) -> None:
    """An InputError when the evaluation ran a different network than the checkpoint describes (a model key the
    evaluation does not record, one added to ModelConfig since, counts as its default)."""
    if summary.model is None:
        return
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    if {**defaults, **summary.model} != to_dict(meta.model):
        raise InputError(f"{source} evaluated a {summary.model} network, but the checkpoint is "
                         f"{to_dict(meta.model)}; pass the metrics.json of an evaluation of this checkpoint")


def _metric_name(key: str) -> str:
    return f"{METRIC_LABELS[key]} (change class)" if key in CHANGE_CLASS_METRICS else METRIC_LABELS[key]


def _training_rows(meta: CheckpointMeta) -> list[tuple[str, str]]:
    training = meta.training
    source = training.get("source")
    if isinstance(source, dict) and source.get("converted_from"):
        return [("origin", "converted from a checkpoint in the authors' format (their BaseNet) with "
                           "`mmchange convert`; see the paper for how the authors trained it")]
    rows = []
    if training.get("dataset"):
        rows.append(("dataset", dataset_name(str(training["dataset"]))))
    for key, label in (("iterations", "iterations"), ("epoch", "epochs"), ("batch_size", "batch size"),
                       ("best_epoch", "best epoch (validation F1)"), ("best_val_f1", "best validation F1"),
                       ("pretrained", "ImageNet-pretrained trunk"), ("freeze", "kept fixed while training"),
                       ("seed", "seed")):
        value = training.get(key)
        if value is not None:
            rows.append((label, f"{value:.4f}" if isinstance(value, float) else str(value)))
    rows.append(("training crop (default window)", f"{meta.tile_size} px"))
    return rows


def _parent_line(meta: CheckpointMeta) -> str:
    """``Fine-tuned from NAME (sha256 ...).`` for a checkpoint trained from another's weights, else empty."""
    parent = meta.training.get("parent")
    if not isinstance(parent, dict) or not parent.get("name"):
        return ""
    digest = f" (sha256 `{parent['sha256']}`)" if parent.get("sha256") else ""
    return f"Fine-tuned from `{parent['name']}`{digest}.\n\n"


def _base_model(meta: CheckpointMeta) -> str | None:
    """The Hub repository a fine-tuned checkpoint started from (front matter ``base_model``), when it was one."""
    parent = meta.training.get("parent")
    name = parent.get("name") if isinstance(parent, dict) else None
    if not isinstance(name, str) or not is_hub_spec(name):
        return None
    try:
        return parse_hub_spec(name).repo_id
    except InputError:
        return None


def card_metadata(meta: CheckpointMeta, repo_id: str, evaluation: EvalSummary | None = None,
                  license: str = "mit") -> Any:
    """huggingface_hub's ModelCardData for the card's front matter (model-index from ``evaluation``)."""
    hub = import_hub("model cards")
    tags = [*TAGS, *(TEXT_TAGS if meta.model.uses_text else ())]
    datasets = []
    trained_on = meta.training.get("dataset")
    if trained_on and _known_dataset(dataset_name(str(trained_on))):
        datasets.append(dataset_name(str(trained_on)))
    eval_results = None
    if evaluation is not None:
        if _known_dataset(evaluation.dataset) and evaluation.dataset not in datasets:
            datasets.append(evaluation.dataset)
        eval_results = [hub.EvalResult(task_type=PIPELINE_TAG, task_name="Change detection",
                                       dataset_type=evaluation.dataset, dataset_name=evaluation.dataset,
                                       dataset_split=evaluation.split, metric_type=METRIC_TYPES.get(key, key),
                                       metric_value=value, metric_name=_metric_name(key))
                        for key, value in evaluation.metrics.items()]
    return hub.ModelCardData(library_name="mmchange", license=license, pipeline_tag=PIPELINE_TAG, tags=tags,
                             datasets=datasets or None, base_model=_base_model(meta),
                             metrics=[METRIC_TYPES.get(k, k) for k in evaluation.metrics] if evaluation else None,
                             model_name=repo_id, eval_results=eval_results)


def _table(header: tuple[str, str], rows: list[tuple[str, str]]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def _model_section(meta: CheckpointMeta) -> str:
    text = "image and text (captions of both dates)" if meta.model.uses_text else "images only"
    rows = [("backbone", meta.model.backbone), ("variant", meta.model.variant), ("inputs", text),
            ("decision threshold", f"{meta.threshold:g}" + (" (tuned on the validation split)"
                                                           if meta.threshold_tuning else "")),
            ("normalisation", f"mean {list(meta.normalization.mean)}, std {list(meta.normalization.std)}"),
            ("written by", f"mmchange {meta.mmchange_version}")]
    if meta.classes is not None:
        shown = ", ".join(f"{c.value} {c.name} (`#{c.colour[0]:02x}{c.colour[1]:02x}{c.colour[2]:02x}`)"
                          for c in meta.classes.classes)
        rows.insert(3, ("classes (label value, name, colour)", shown))
    if meta.model.uses_text:
        rows[3:3] = [("text width", str(meta.model.text_dim)),
                     ("captioner", f"`{meta.captioner_id}`" if meta.captioner_id else "not recorded"),
                     ("text encoder", f"`{meta.encoder_id}`" if meta.encoder_id else "not recorded")]
    return _table(("item", "value"), rows)


def _use(meta: CheckpointMeta) -> str:
    if meta.model.num_classes > 2:
        return f"maps of {meta.model.num_classes - 1} change classes ({', '.join(meta.class_scheme.names[1:])})"
    return "binary change maps (changed / unchanged)"


def _not_for(meta: CheckpointMeta) -> str:
    return "change classes other than those listed, " if meta.model.num_classes > 2 else "semantic change classes, "


def _eval_section(evaluation: EvalSummary | None, meta: CheckpointMeta) -> str:
    if evaluation is None:
        return ("No evaluation was published with this model. Measure it on your data with "
                "`mmchange eval --checkpoint ... --dataset ...`.")
    where = f"the {evaluation.split} split of {evaluation.dataset}"
    pairs = f", {evaluation.pairs} image pairs" if evaluation.pairs else ""
    threshold = "" if evaluation.threshold is None else f", threshold {evaluation.threshold:g}"
    note = ""
    if evaluation.threshold is not None and not math.isclose(evaluation.threshold, meta.threshold):
        note = (f"\n\nThe evaluation used threshold {evaluation.threshold:g}; the checkpoint's own is "
                f"{meta.threshold:g}, which `mmchange predict` uses unless `--threshold` is given.")
    rows = [(_metric_name(key), f"{100 * value:.2f}") for key, value in evaluation.metrics.items()]
    return (f"`mmchange eval` on {where}{pairs}{threshold}, in percent. Precision, recall, F1 and IoU are\n"
            f"those of the change class; all come from one confusion matrix over all pixels of the split\n"
            f"(the paper's protocol).\n\n" + _table(("metric", "%"), rows) + note)


def _int8_section(certificate: Any) -> str:
    """The card's paragraph on the certified int8 export (empty without one)."""
    if certificate is None:
        return ""
    state = ("within the accuracy bound, so `--precision auto` runs it on CPUs" if certificate.within_bound else
             f"below the accuracy bound ({certificate.problem()}), so it runs only with `--accept-int8-drift`")
    return (f"\n`{INT8_FILES[0]}` is the model's int8 export for CPUs (onnxruntime, statically quantised, calibrated "
            f"on {certificate.calibration}), with its accuracy certificate in `{INT8_FILES[1]}`: "
            f"{certificate.figures()}. It is {state}; `--precision fp32` runs the full-precision network.\n")


def model_card(meta: CheckpointMeta, repo_id: str, *, evaluation: EvalSummary | None = None,
               license: str = "mit", int8: Any = None) -> str:
    """The full README.md of the model repository ``repo_id`` (front matter + body); ``int8``: the certificate of
    the int8 export uploaded with it."""
    hub = import_hub("model cards")
    data = card_metadata(meta, repo_id, evaluation, license)
    spec = f"{HUB_SCHEME}{repo_id}"
    text_use = ("\nThe model reads captions of both dates. Without `--captions`, mmchange captions the "
                "images on the fly with the captioner above (its weights download from the Hub on first "
                "use).\n" if meta.model.uses_text else "")
    body = f"""
# {repo_id}

An [MMChange](#citation) change-detection network for pairs of co-registered remote-sensing images
(two dates of the same place), published with mmchange. It marks, pixel by pixel, where the scene
changed between the first and the second date.

## Model

{_model_section(meta)}

The checkpoint is `{WEIGHTS_FILE}`: the weights plus, in the safetensors header, the model config
and the metadata above. It rebuilds its network alone, and loading it never unpickles Python objects.
`config.yaml` is the configuration it was trained with (or, when none was kept, its metadata).

## Training

{_parent_line(meta)}{_table(("item", "value"), _training_rows(meta))}

## Evaluation

{_eval_section(evaluation, meta)}

## How to use

```bash
pip install 'mmchange[hub]'
mmchange predict before.png after.png -o change.png --checkpoint {spec}
mmchange info --checkpoint {spec}          # the checkpoint's metadata
```

```python
from mmchange_core import ChangeDetector

detector = ChangeDetector.from_checkpoint("{spec}", device="auto")
result = detector.predict("before.png", "after.png")   # result.mask, result.probability
```

`{spec}@REVISION` loads a branch, tag or commit. The file goes to the Hugging Face cache
(`HF_HUB_CACHE`, by default `~/.cache/huggingface/hub`); after the first download it loads offline,
also with `HF_HUB_OFFLINE=1`. For a machine without internet access, run
`hf download {repo_id} {WEIGHTS_FILE}` elsewhere and copy the cache over. Private models read the
token from `HF_TOKEN` or `hf auth login`.
{text_use}{_int8_section(int8)}
## Intended use and limits

- For: {_use(meta)} of co-registered RGB image pairs of the same size,
  of scenes like the training data (resolution, sensor, region, season); any size, processed in
  sliding windows of {meta.tile_size} px.
- Not for: {_not_for(meta)}SAR or multispectral bands, unregistered or differently
  sized pairs, or decisions about people or property without review. Accuracy drops under domain
  shift (other sensors, resolutions, regions); check it with `mmchange eval` on labelled pairs of
  your own data before relying on it.
- The training and evaluation datasets have their own licences and terms of use.

## Citation

The MMChange network is the paper's; please cite it when you use this model:

```bibtex
{CITATION}
```
"""
    card = hub.ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")  # parses the metadata back: a check
    return str(card)
