"""What the detector settings record says: the full record for people, the output-changing part for resumes."""

from __future__ import annotations

from mmchange_core.inference.settings import DetectorSettings, settings_record


def test_a_resume_on_another_gpu_of_the_same_kind_keeps_the_fingerprint() -> None:
    def outputs(device: str) -> dict:
        return settings_record(DetectorSettings(device=device, tile_size=64, threshold=0.5), backend="torch",
                               checkpoint="m.safetensors", outputs_only=True)

    assert outputs("cuda:0") == outputs("cuda:1") == outputs("cuda")
    assert outputs("cuda:0")["device"] == "cuda" and outputs("cpu")["device"] == "cpu"
    assert "workers" not in outputs("cpu") and "captions" not in outputs("cpu")  # they do not change the numbers


def test_the_full_record_names_the_checkpoint_and_why_it_was_chosen() -> None:
    record = settings_record(DetectorSettings(device="cuda:1"), backend="onnxruntime", checkpoint="m.onnx",
                             chosen="no --checkpoint given: using m.onnx")
    assert record["device"] == "cuda:1" and record["backend"] == "onnxruntime" and record["checkpoint"] == "m.onnx"
    assert record["checkpoint_chosen"] == "no --checkpoint given: using m.onnx" and record["workers"] == 2
