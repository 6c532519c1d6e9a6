"""Change mask of one pair with an `mmchange export`ed image-only model, using only numpy, onnxruntime and Pillow.

    python examples/onnx_predict.py model.onnx A.png B.png mask.png [prob.npy]

The pair's height and width must be multiples of 32; the whole pair runs in one pass (mmchange predict
cuts larger scenes into tile-size windows and blends them, so it gives the same result up to the tile size).
"""
import json
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

model, path_a, path_b, mask_path, *prob_path = sys.argv[1:]
session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
meta = json.loads(session.get_modelmeta().custom_metadata_map["mmchange_meta"])  # the checkpoint's metadata
mean, std = (np.array(meta["normalization"][key], np.float32).reshape(1, 3, 1, 1) for key in ("mean", "std"))


def load(path: str) -> np.ndarray:  # uint8 H x W x 3 -> normalised float32 1 x 3 x H x W
    return (np.asarray(Image.open(path).convert("RGB"), np.float32).transpose(2, 0, 1)[None] / 255 - mean) / std


(prob,) = session.run(["probability"], {"image_a": load(path_a), "image_b": load(path_b)})
Image.fromarray(np.where(prob[0, 0] > meta["threshold"], 255, 0).astype(np.uint8)).save(mask_path)
if prob_path:
    np.save(prob_path[0], prob[0, 0])
