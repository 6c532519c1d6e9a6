"""The class file: value, name and colour of each class, checked at load; class labels read through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.errors import InputError
from mmchange_core.io.classes import ClassScheme, load_class_file
from mmchange_core.io.images import read_class_label

GOOD = """classes:
  - {value: 0, name: no change, colour: [0, 0, 0]}
  - {value: 3, name: new building, colour: [230, 25, 75]}
  - {value: 7, name: demolished building, colour: '#0082c8'}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "classes.yaml"
    path.write_text(text)
    return path


def test_a_class_file_is_read_with_no_change_first_and_its_colours(tmp_path: Path) -> None:
    scheme = load_class_file(write(tmp_path, GOOD))
    assert scheme.values == (0, 3, 7)
    assert scheme.names == ("no change", "new building", "demolished building")
    assert scheme.colours[2] == (0, 130, 200)  # '#0082c8'
    assert scheme.outputs == 3 and not scheme.is_binary
    palette = scheme.palette()
    assert palette[3 * 3:3 * 3 + 3] == [230, 25, 75] and palette[7 * 3:7 * 3 + 3] == [0, 130, 200]
    assert ClassScheme.from_dict(scheme.to_dict()) == scheme
    # a plain list works too, and 'no change' is moved first whatever its place in the file
    listed = load_class_file(write(tmp_path, "- {value: 2, name: a}\n- {value: 0, name: none}\n"))
    assert listed.values == (0, 2)


@pytest.mark.parametrize("text, words", [
    ("- {value: 0, name: none}\n- {value: 1, name: a}\n- {value: 1, name: b}\n", "value 1 twice"),
    ("- {value: 0, name: none}\n- {value: 1, name: a}\n- {value: 2, name: A}\n", "name a twice"),
    ("- {value: 0, name: none}\n- {value: 1, name: a, colour: [255, 0]}\n", "not RGB"),
    ("- {value: 0, name: none}\n- {value: 1, name: a, colour: [256, 0, 0]}\n", "not RGB"),
    ("- {value: 0, name: none}\n- {value: 1, name: a, colour: red}\n", "not RGB"),
    ("- {value: 1, name: a}\n- {value: 2, name: b}\n", "value 0"),
    ("- {value: 0, name: none}\n- {value: 300, name: a}\n", "0..255"),
    ("- {value: 0, name: none}\n", "at least one change class"),
    ("- {value: 0, name: none}\n- {value: 1}\n", "needs a name"),
    ("classes: [{value: 0, name: none], oops", "not valid YAML"),
])
def test_a_bad_class_file_is_one_line_naming_the_file(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        load_class_file(path)
    message = str(info.value)
    assert words in message and str(path) in message and "\n" not in message


def test_a_missing_class_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_class_file(tmp_path / "nope.yaml")


def test_class_labels_become_indices_and_an_unknown_value_is_refused(tmp_path: Path) -> None:
    scheme = load_class_file(write(tmp_path, GOOD))
    values = np.array([[0, 3, 7], [7, 0, 3]], dtype=np.uint8)
    grey = tmp_path / "grey.png"
    Image.fromarray(values).save(grey)
    np.testing.assert_array_equal(read_class_label(grey, scheme), [[0, 1, 2], [2, 0, 1]])
    palette = tmp_path / "palette.png"
    image = Image.frombytes("P", (3, 2), values.tobytes())
    image.putpalette(scheme.palette())
    image.save(palette)
    np.testing.assert_array_equal(read_class_label(palette, scheme), [[0, 1, 2], [2, 0, 1]])
    bad = tmp_path / "bad.png"
    Image.fromarray(np.array([[0, 3, 5]], dtype=np.uint8)).save(bad)
    with pytest.raises(InputError) as info:
        read_class_label(bad, scheme)
    assert str(bad) in str(info.value) and "value 5" in str(info.value)


def test_a_geotiff_class_label_is_read_from_band_one(tmp_path: Path) -> None:
    rasterio = pytest.importorskip("rasterio")
    scheme = load_class_file(write(tmp_path, GOOD))
    path = tmp_path / "label.tif"
    values = np.array([[0, 3], [7, 7]], dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=1, dtype="uint8") as dst:
        dst.write(values, 1)
    np.testing.assert_array_equal(read_class_label(path, scheme), [[0, 1], [2, 2]])
