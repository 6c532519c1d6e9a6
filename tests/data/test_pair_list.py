"""Datasets given as CSV/JSON pair lists: the same pairs as the folder layout, one-line errors, caption keys."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from mmchange_core.data.dataset import ChangeDetectionDataset
from mmchange_core.data.layouts import detect_layout, resolve_dataset_root
from mmchange_core.errors import InputError
from tests.data_helpers import caption_basic, synth_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("lists") / "ds", pairs=5, size=64)


def _rows(root: Path, base: Path | None = None) -> list[dict[str, str]]:
    """One row per pair of the folder layout at ``root``; paths relative to ``base`` (absolute when None)."""
    rows = []
    for split, pairs in detect_layout(root).splits.items():
        for pair in pairs:
            paths = [pair.image_a, pair.image_b, pair.label]
            shown = [str(p) if base is None else str(p.relative_to(base)) for p in paths]
            rows.append(dict(zip(("image_a", "image_b", "label"), shown), split=split))
    return rows


def _write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> Path:
    columns = columns or list(rows[0])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_csv_and_json_lists_give_the_folder_layouts_pairs(data: Path) -> None:
    folder = detect_layout(data)
    csv_list = _write_csv(data / "pairs.csv", _rows(data, data))  # relative to the list's folder
    json_list = data / "pairs.json"
    json_list.write_text(json.dumps(_rows(data)))  # absolute paths
    for listing in (csv_list, json_list):
        assert resolve_dataset_root(str(listing)) == listing
        layout = detect_layout(resolve_dataset_root(str(listing)))
        assert layout.kind == "pair-list" and layout.root == data and layout.source == listing
        assert layout.splits == folder.splits
        assert str(listing) in layout.describe() and "train 3, val 1, test 1" in layout.describe()
    listed = ChangeDetectionDataset(detect_layout(csv_list), "train", 64)
    folders = ChangeDetectionDataset(folder, "train", 64)
    assert all(torch.equal(listed[0][k], folders[0][k]) for k in folders[0])


def test_list_without_split_column_serves_every_split(data: Path, tmp_path: Path) -> None:
    listing = _write_csv(tmp_path / "unsplit.csv", _rows(data), ["image_a", "image_b", "label"])
    layout = detect_layout(listing)
    assert list(layout.splits) == ["all"] and len(layout.pairs("train")) == len(layout.pairs("test")) == 5


def test_list_elsewhere_gets_dotdot_caption_keys_and_captions_work(data: Path, tmp_path: Path) -> None:
    shutil.copytree(data / "train", tmp_path / "ds" / "train")
    lists = tmp_path / "lists"
    lists.mkdir()
    rows = [{**row, "label": f"../{Path(row['label']).relative_to(tmp_path)}"}  # images absolute, label ../
            for row in _rows(tmp_path / "ds")]
    listing = _write_csv(lists / "pairs.csv", rows)
    layout = detect_layout(listing)
    pair = layout.pairs("train")[0]
    assert pair.relative(layout.root) == (f"../ds/train/A/{pair.name}", f"../ds/train/B/{pair.name}")
    caption_basic(listing)  # the caption command takes the list; its store goes beside it
    from mmchange_core.text.features import open_caption_store, pair_embeddings

    store = open_caption_store(layout.root)
    assert store.path == lists / "mmchange_captions.jsonl"
    emb_a, emb_b = pair_embeddings(store, layout.root, layout.pairs("train"))
    assert emb_a.shape == emb_b.shape == (3, 512)


def _bad_lists(data: Path, tmp_path: Path) -> list[tuple[Path, str]]:
    rows = _rows(data)
    missing = [dict(rows[0]), *rows[1:]]
    missing[1] = {**missing[1], "image_b": "nowhere/b.png"}
    duplicate = [*rows, {**rows[0], "label": rows[0]["label"]}]
    cases = [
        (_write_csv(tmp_path / "no_b.csv", rows, ["image_a", "label"]),
         r"no_b.csv line 1: column 'image_b' is missing"),
        (_write_csv(tmp_path / "typo.csv", [{"image_a": "a", "imge_b": "b"}]),
         r"typo.csv line 1: unknown column 'imge_b'; the columns of a pair list are image_a, image_b"),
        (_write_csv(tmp_path / "missing.csv", missing), r"missing.csv line 3: image_b nowhere/b.png not found"),
        (_write_csv(tmp_path / "dup.csv", duplicate),
         r"dup.csv line 7: pair name '0000.png' is already used in split 'train' by line 2"),
        (_write_csv(tmp_path / "empty_split.csv", [{**rows[0], "split": ""}]),
         r"empty_split.csv line 2: split is empty"),
    ]
    for name, text, message in [
        ("broken.json", "[{", r"broken.json is not valid JSON"),
        ("object.json", json.dumps({"image_a": "a"}), r"object.json must hold a JSON list of objects"),
        ("number.json", json.dumps([{**rows[0], "label": 3}]), r"number.json item 1: 'label' must be text"),
        ("nothing.json", "[]", r"nothing.json lists no pairs"),
    ]:
        (tmp_path / name).write_text(text)
        cases.append((tmp_path / name, message))
    return cases


def test_bad_lists_fail_with_one_line_naming_the_row(data: Path, tmp_path: Path) -> None:
    for listing, message in _bad_lists(data, tmp_path):
        with pytest.raises(InputError, match=message) as caught:
            detect_layout(resolve_dataset_root(str(listing)))
        assert "\n" not in str(caught.value), listing
    with pytest.raises(InputError, match="pair list not found: .*gone.csv"):
        resolve_dataset_root(str(tmp_path / "gone.csv"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match=r"notes.txt is a file; pass a dataset folder or a pair list"):
        resolve_dataset_root(str(tmp_path / "notes.txt"))


def test_train_command_refuses_a_bad_list_before_any_run_folder(cli, data: Path, tmp_path: Path) -> None:
    rows = _rows(data)
    rows[2] = {**rows[2], "label": "labels/missing.png"}
    listing = _write_csv(tmp_path / "pairs.csv", rows)
    result = cli("train", "--dataset", listing, "--backbone", "resnet18", "--variant", "image-only",
                 "--no-pretrained", "--device", "cpu", "--project", tmp_path / "runs")
    assert result.exit_code == 1, result.output
    assert "pairs.csv line 4: label labels/missing.png not found" in " ".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_labels_missing_from_a_pair_list_get_pair_list_advice(data: Path, tmp_path: Path) -> None:
    """The advice names the list, its row and its 'label' column, not the 'label' folder of folder layouts."""
    rows = _rows(data)
    no_column = _write_csv(tmp_path / "pairs.csv", rows, ["image_a", "image_b", "split"])
    with pytest.raises(InputError) as caught:
        detect_layout(no_column).require_labels("test")
    assert str(caught.value) == (f"{no_column} has no 'label' column; add one with each pair's label path (relative "
                                 f"to {tmp_path}), as evaluation and training need a label for every pair")
    some_empty = tmp_path / "some.json"
    some_empty.write_text(json.dumps([{**row, "label": "" if row["split"] == "train" and i == 1 else row["label"]}
                                      for i, row in enumerate(rows)]))
    with pytest.raises(InputError) as caught:
        detect_layout(some_empty).require_labels("train")
    assert str(caught.value).startswith(f"{some_empty} item 2: no label for pair ")
    assert "(1 of 3 pair(s) of split 'train' have none); give each pair's label path in the 'label' column" in \
        str(caught.value)
    assert "'label' folder" not in str(caught.value)


def test_a_pair_list_that_is_a_fifo_is_refused_unopened(tmp_path: Path) -> None:
    import os

    listing = tmp_path / "pairs.csv"
    os.mkfifo(listing)
    for call in (lambda: resolve_dataset_root(str(listing)), lambda: detect_layout(listing)):
        with pytest.raises(InputError, match=r"pairs.csv is not a regular file \(a FIFO, device or socket\)"):
            call()
    fifo = tmp_path / "dataset"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"dataset is not a regular file \(a FIFO, device or socket\); pass a "
                                         r"dataset folder"):
        resolve_dataset_root(str(fifo))
