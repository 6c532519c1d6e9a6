"""The CPU speed of every inference path, measured in one process, interleaved round by round.

    python benchmarks/cpu_speed.py --out bench-cpu-speed                       # the full run
    python benchmarks/cpu_speed.py --backbone resnet18 --size 64 --rounds 1 --e2e-size 512 \\
        --models image-only --out /tmp/cpu-quick                                # a quick check of the script

Models (random weights, seeded, BatchNorm statistics randomised so that folding them matters; the speed of a
network does not depend on its weights): ``full`` (image + text, text width 512) and ``image-only``, on the
``--backbone`` trunk (default resnet50, the paper's).

Paths, each timed on the same random normalised batches (text models: one random [1, 512] text per date):

* ``authors``: mmchange's network in plain fp32 eager mode (``InferenceRunner(model, "cpu", "fp32",
  fold_bn=False, channels_last=False, cuda_graphs=False)``), which computes the authors' network: the baseline;
* ``torch``: mmchange's default CPU path (``InferenceRunner(model, "cpu")``: folded BatchNorm, channels_last,
  the CPU kernel rewrites);
* ``onnxruntime-fp32``: the fp32 ``.onnx`` of ``mmchange export`` run by mmchange's OnnxRunner;
* ``openvino-fp32``: OpenVINO reading the same fp32 ``.onnx`` (``Core().compile_model``, CPU, f32 inference
  precision, ``INFERENCE_NUM_THREADS``; the graph reshaped to each batch's static shape unless
  ``--openvino-dynamic``); skipped with a note when openvino is not installed;
* ``onnxruntime-int8``: the static int8 ``.onnx`` (``export_model_file(..., quantize="int8")``) calibrated on
  ``--calibration-windows`` windows of a synthetic dataset's train split (``mmchange synth``, ``--size`` pixels).

Grid: batch ``--batches`` (1, 4) x threads ``--threads`` (1, 2) (``torch.set_num_threads``; onnxruntime sessions
and OpenVINO compiled models are built per thread count). Every round runs every (model, threads, batch, path)
once, in a rotated path order, so load changes on a shared machine hit every path alike; the median of
``--rounds`` rounds after ``--warmup`` rounds is reported in ms per pair (one window pair of ``--size`` pixels:
ms per call / batch), with its ratio to ``authors``.

Also measured: export and quantisation seconds (the first-use cost) and the first-use trade-off on a
``--scene`` x ``--scene`` pair (windows at the default overlap x per-window time + export; the number of pairs
after which each export path beats the torch path); an end-to-end ``mmchange predict`` (the library function
the command calls) of a ``--e2e-size`` GeoTIFF pair with the torch checkpoint, the fp32 and the int8 ``.onnx``,
against the network-only time of the same windows; the accuracy of int8 (``--trained``/``--trained-data``: a
trained checkpoint certified on its dataset's test split with ``measure_drift``; ``--train-iters``: train a small
one here first; ``--real``: agreement of the random full model's int8 and fp32 masks on real tiles).

Writes ``--out``/cpu_speed.md (the tables, also printed) and ``--out``/cpu_speed.json (every number, the machine
and the versions); the JSON is rewritten after each stage, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

PATHS = ("authors", "torch", "onnxruntime-fp32", "openvino-fp32", "onnxruntime-int8")
EXPORT_PATHS = ("onnxruntime-fp32", "openvino-fp32", "onnxruntime-int8")
E2E_PATHS = ("torch", "onnxruntime-fp32", "onnxruntime-int8")
MODELS = ("full", "image-only")
TEXT_DIM = 512
AUTHORS_NOTE = "mmchange's network in plain fp32 eager mode, which computes the authors' network"
GOALS = {"int8_vs_authors": 5.0, "torch_vs_authors": 2.0, "e2e_vs_network": 0.9}
#: Environment variables that change how the runtimes use threads (recorded, and put in front of the command).
THREAD_ENV = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "MMCHANGE_CPU_THREADS")
DEFAULT_REAL = ROOT.parent / "shared" / "data" / "real" / "LEVIR-CD-samples"


def _csv(kind: type, choices: tuple[str, ...] | None = None):
    def parse(text: str) -> list:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        if choices is not None:
            unknown = [v for v in values if v not in choices]
            if unknown:
                raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(choices)}")
        return values
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-cpu-speed"), help="output folder (default %(default)s)")
    parser.add_argument("--models", type=_csv(str, MODELS), default=list(MODELS),
                        help="comma-separated variants to measure (default full,image-only)")
    parser.add_argument("--backbone", default="resnet50", choices=("resnet18", "resnet34", "resnet50"),
                        help="trunk of the random models (default resnet50; resnet18 for quick runs)")
    parser.add_argument("--size", type=int, default=256, help="window side in pixels (default 256)")
    parser.add_argument("--batches", type=_csv(int), default=[1, 4], help="batch sizes (default 1,4)")
    parser.add_argument("--threads", type=_csv(int), default=[1, 2], help="CPU thread counts (default 1,2)")
    parser.add_argument("--paths", type=_csv(str, PATHS), default=list(PATHS),
                        help=f"paths to time (default all: {','.join(PATHS)}; authors is always kept)")
    parser.add_argument("--rounds", type=int, default=5, help="timed interleaved rounds (default 5; median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument("--gap", type=float, default=0.1,
                        help="seconds of pause before each timed call, so the worker threads of the previous "
                             "runtime (OpenMP, onnxruntime, OpenVINO's TBB) stop spinning first (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--calibration-windows", type=int, default=32,
                        help="int8 calibration windows (one per synthetic train pair; default 32)")
    parser.add_argument("--openvino-dynamic", action="store_true",
                        help="compile the .onnx with its dynamic shapes instead of reshaping it per batch size")
    parser.add_argument("--scene", type=int, default=1024, help="side of the first-use trade-off scene (default 1024)")
    parser.add_argument("--e2e-size", type=int, default=4096, help="side of the end-to-end GeoTIFF pair (default 4096)")
    parser.add_argument("--e2e-models", type=_csv(str, MODELS), default=None,
                        help="variants predicted end to end (default: full if measured, else the first of --models)")
    parser.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end predict")
    parser.add_argument("--e2e-probe", type=int, default=6,
                        help="network-only calls timed right before and right after each end-to-end predict "
                             "(default 6 each)")
    parser.add_argument("--trained", type=Path, default=None, help="a trained checkpoint to certify in int8")
    parser.add_argument("--trained-data", type=Path, default=None,
                        help="its dataset (int8 calibrated on its train split, certified on its test split)")
    parser.add_argument("--train-iters", type=int, default=0,
                        help="without --trained: train a full model for this many iterations on synthetic 64x64 "
                             "data first and certify it (default 0: skip)")
    parser.add_argument("--train-pairs", type=int, default=300, help="synthetic pairs for --train-iters (default 300)")
    parser.add_argument("--train-lr", type=float, default=4e-3, help="learning rate for --train-iters (default 4e-3)")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL if DEFAULT_REAL.is_dir() else None,
                        help="labelled real tiles: agreement of the random full model's int8 and fp32 masks "
                             "(default: ../shared/data/real/LEVIR-CD-samples when it exists)")
    parser.add_argument("--skip-real", action="store_true", help="skip the real-tile agreement")
    args = parser.parse_args(argv)
    if "authors" not in args.paths:
        args.paths = ["authors", *args.paths]
    args.paths = [p for p in PATHS if p in args.paths]
    args.models = [m for m in MODELS if m in args.models]
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    if args.size % 32 or args.size < 64:
        parser.error("--size must be a multiple of 32 and at least 64 (windows overlap by 32 pixels)")
    if (args.trained is None) != (args.trained_data is None):
        parser.error("--trained and --trained-data go together")
    if args.e2e_models is None:
        args.e2e_models = ["full"] if "full" in args.models else args.models[:1]
    args.e2e_models = [m for m in args.e2e_models if m in args.models]
    return args


# --------------------------------------------------------------------------------------------------
# the record


class Record:
    """Every number, written to cpu_speed.json after each stage."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.path = out / "cpu_speed.json"
        self.data: dict[str, Any] = {
            "command": " ".join([*(f"{k}={os.environ[k]}" for k in THREAD_ENV if k in os.environ),
                                 Path(sys.executable).name, *sys.argv]),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "authors_path": AUTHORS_NOTE,
            "goals": dict(GOALS), "notes": [],
        }

    def note(self, text: str) -> None:
        print(f"note: {text}", flush=True)
        self.data["notes"].append(text)

    def save(self) -> None:
        """Rewrite cpu_speed.json and cpu_speed.md with what is measured so far."""
        self.data["updated"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        for path, text in ((self.path, json.dumps(self.data, indent=2, default=str)),
                           (self.path.with_suffix(".md"), markdown(self.data))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(path)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage of the run into ``stage_seconds`` (saved when it ends)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.data.setdefault("stage_seconds", {})[name] = round(time.perf_counter() - start, 1)
            self.save()


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "os_cpu_count": os.cpu_count()}
    try:
        info["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        text = Path("/proc/cpuinfo").read_text()
        names = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")]
        info["cpu_model"] = names[0] if names else "unknown"
        info["logical_cpus"] = len(names)
        flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
        info["cpu_flags"] = sorted(f for f in flags if f.startswith(("avx", "amx")) or "vnni" in f or f == "fma")
    except OSError:
        info["cpu_model"] = platform.processor() or "unknown"
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    try:
        mem = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines() if ":" in line)
        info["memory_gib"] = round(int(mem["MemTotal"].split()[0]) / 2**20, 1)
    except (OSError, KeyError, ValueError):
        pass
    info["env"] = {k: os.environ[k] for k in THREAD_ENV if k in os.environ}
    return info


def versions() -> dict[str, str]:
    from mmchange_core.environment import environment_report

    found = dict(environment_report())
    for name in ("onnxruntime", "onnx", "openvino", "numpy", "rasterio"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", "?")
        except ImportError:
            found[name] = "not installed"
    return found


class CpuMeter:
    """How many cores other processes kept busy since the last reading (/proc/stat minus this process)."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.last = self._sample()

    @staticmethod
    def _sample() -> tuple[float, int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
            busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
            own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            return time.monotonic(), busy, int(own[11]) + int(own[12])  # utime + stime of every thread
        except (OSError, ValueError, IndexError):
            return None

    def other_cores(self) -> float | None:
        now = self._sample()
        last, self.last = self.last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        return max(0.0, ((now[1] - last[1]) - (now[2] - last[2])) / self.tick / (now[0] - last[0]))


# --------------------------------------------------------------------------------------------------
# models, exports, runners


def randomise_batchnorm(model: Any, seed: int) -> None:
    """Seeded random BatchNorm statistics and affine parameters (as benchmarks/onnx_speed.py and the tests)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


def text_pipeline(dim: int = TEXT_DIM) -> Any:
    """The offline ``basic`` captioner with the ``hashing`` encoder (the text pipeline of the full models)."""
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, TextPipeline

    return TextPipeline(CaptionerConfig(name="basic"), TextEncoderConfig(name="hashing", dim=dim), device="cpu")


def caption(root: Path, dim: int = TEXT_DIM) -> None:
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    caption_dataset(root, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing", dim=dim),
                    device="cpu")


def make_random_checkpoint(out: Path, backbone: str, variant: str, size: int, seed: int) -> Path:
    import torch

    from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint

    torch.manual_seed(seed)
    model = build_model(backbone, variant, text_dim=TEXT_DIM)
    randomise_batchnorm(model, seed)
    description = text_pipeline().describe() if model.uses_text else None
    meta = CheckpointMeta(model=model.config, tile_size=size, text_description=description,
                          training={"source": "benchmarks/cpu_speed.py: random weights, BatchNorm randomised"})
    return save_checkpoint(out / f"{backbone}-{variant}.safetensors", model, meta)


def make_calibration_data(root: Path, windows: int, size: int, text: bool, seed: int) -> Path:
    """A synthetic dataset whose train split has ``windows`` pairs of ``size`` pixels (one window each)."""
    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset

    pairs = windows + 2
    fraction = 0.5 / pairs  # rounds to 0: one val and one test pair
    make_synthetic_dataset(root, SynthConfig(pairs=pairs, size=size, seed=seed + 100, val_fraction=fraction,
                                             test_fraction=fraction))
    if text:
        caption(root)
    return root


def export_pair(checkpoint: Path, out: Path, calibration_root: Path, windows: int, split: str = "train",
                want_int8: bool = True) -> dict[str, Any]:
    """fp32 export and static int8 quantisation of ``checkpoint``, timed (the first-use cost)."""
    from mmchange_core.inference.backends import export_model_file, read_model_meta
    from mmchange_core.inference.int8 import calibration_batches, calibration_reader

    info: dict[str, Any] = {}
    fp32_path, int8_path = out.with_suffix(".onnx"), out.with_name(out.name + "-int8.onnx")
    t0 = time.perf_counter()
    fp32 = export_model_file(checkpoint, fp32_path)
    info["export_fp32_s"] = time.perf_counter() - t0
    info["fp32_onnx"] = str(fp32.path)
    info["fp32_max_abs_logit_diff_vs_torch"] = fp32.max_abs_logit_diff
    info["fp32_size_mb"] = fp32.size_mb
    if not want_int8:
        return info
    meta = read_model_meta(checkpoint)
    t0 = time.perf_counter()
    feeds, pairs = calibration_batches(meta, calibration_root, split, windows=windows)
    info["calibration_read_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    int8 = export_model_file(fp32.path, int8_path, quantize="int8", calibration=calibration_reader(feeds))
    info["quantize_int8_s"] = time.perf_counter() - t1
    info["int8_total_s"] = time.perf_counter() - t0  # reading the calibration windows + quantising
    info.update(int8_onnx=str(int8.path), calibration_windows=len(feeds), calibration_pairs=pairs,
                int8_size_mb=int8.size_mb, int8_max_abs_logit_diff_vs_fp32=int8.max_abs_logit_diff,
                int8_export_reported_speedup_vs_fp32=int8.speedup)
    return info


class OpenVinoRunner:
    """OpenVINO on the fp32 .onnx behind :class:`InferenceRunner`'s ``logits()``."""

    def __init__(self, path: Path, threads: int, batch: int | None, size: int, text: bool) -> None:
        import openvino as ov

        core = ov.Core()
        start = time.perf_counter()
        model = core.read_model(str(path))
        if batch is not None:  # the static shape of this batch size (the .onnx has dynamic N, H, W)
            shapes = {"image_a": [batch, 3, size, size], "image_b": [batch, 3, size, size]}
            if text:
                shapes.update(text_a=[1, TEXT_DIM], text_b=[1, TEXT_DIM])
            model.reshape(shapes)
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                  "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = core.compile_model(model, "CPU", config)
        self.compile_seconds = time.perf_counter() - start
        self.request = self.compiled.create_infer_request()
        known = ("image_a", "image_b", "text_a", "text_b")  # a port may carry other tensor names too
        self.inputs = [next(n for n in known if n in port.get_names()) for port in self.compiled.inputs]
        self.output = self.compiled.output("logits")
        self.text = text

    def logits(self, img_a: Any, img_b: Any, text_a: Any = None, text_b: Any = None) -> Any:
        import numpy as np
        import torch

        feed = {"image_a": img_a.numpy(), "image_b": img_b.numpy()}
        if self.text:
            feed.update(text_a=text_a.numpy(), text_b=text_b.numpy())
        self.request.infer({i: np.ascontiguousarray(feed[name], dtype=np.float32) for i, name in enumerate(self.inputs)})
        return torch.from_numpy(np.array(self.request.get_tensor(self.output).data))


def openvino_available(record: Record) -> bool:
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        record.note(f"openvino is not importable ({exc}); the openvino-fp32 path is skipped")
        return False
    return True


# --------------------------------------------------------------------------------------------------
# timing


def time_grid(args: argparse.Namespace, models: dict[str, dict[str, Any]], record: Record) -> list[dict[str, Any]]:
    """Every (model, threads, batch, path) once per round, paths in a rotated order; medians per cell."""
    import torch

    from mmchange_core.inference.onnx_runner import OnnxRunner
    from mmchange_core.inference.runner import InferenceRunner
    from mmchange_core.models import load_checkpoint

    cells: list[tuple[str, int, int]] = [(m, t, b) for m in models for t in args.threads for b in args.batches]
    runners: dict[tuple[str, int, int, str], Any] = {}
    loads: dict[str, dict[str, float]] = {}
    for name, info in models.items():
        model, _ = load_checkpoint(info["checkpoint"])
        loads[name] = {}
        t0 = time.perf_counter()
        authors = InferenceRunner(model, "cpu", "fp32", fold_bn=False, channels_last=False, cuda_graphs=False)
        fast = InferenceRunner(model, "cpu")
        loads[name]["torch_runner_s"] = time.perf_counter() - t0
        for threads in args.threads:
            sessions: dict[str, Any] = {}
            for path, key in (("onnxruntime-fp32", "fp32_onnx"), ("onnxruntime-int8", "int8_onnx")):
                if path in args.paths and key in info:
                    t0 = time.perf_counter()
                    sessions[path] = OnnxRunner(info[key], "cpu", threads=threads)
                    loads[name][f"{path}_session_s_{threads}t"] = time.perf_counter() - t0
            for batch in args.batches:
                cell = (name, threads, batch)
                runners[(*cell, "authors")] = authors
                if "torch" in args.paths:
                    runners[(*cell, "torch")] = fast
                for path, session in sessions.items():
                    runners[(*cell, path)] = session
                if "openvino-fp32" in args.paths and "fp32_onnx" in info:
                    ov = OpenVinoRunner(Path(info["fp32_onnx"]), threads, None if args.openvino_dynamic else batch,
                                        args.size, model.uses_text)
                    loads[name][f"openvino_compile_s_{threads}t_b{batch}"] = ov.compile_seconds
                    runners[(*cell, "openvino-fp32")] = ov
        info["load_seconds"] = loads[name]
    gen = torch.Generator().manual_seed(args.seed + 1)
    inputs: dict[tuple[str, int], tuple] = {}
    for name in models:
        uses_text = name == "full"
        for batch in args.batches:
            images = tuple(torch.randn(batch, 3, args.size, args.size, generator=gen) for _ in range(2))
            text = tuple(torch.randn(1, TEXT_DIM, generator=gen) for _ in range(2)) if uses_text else (None, None)
            inputs[(name, batch)] = images + text
    times: dict[tuple[str, int, int, str], list[float]] = {key: [] for key in runners}
    diffs: dict[tuple[str, int, int, str], float] = {}
    reference: dict[tuple[str, int, int], Any] = {}
    total_rounds = args.warmup + args.rounds
    started = time.perf_counter()
    meter = CpuMeter()
    other: list[float] = []
    for round_ in range(total_rounds):
        timed = round_ >= args.warmup
        meter.other_cores()
        for cell in cells:
            torch.set_num_threads(cell[1])
            paths = [p for p in args.paths if (*cell, p) in runners]
            shift = round_ % len(paths)
            for path in paths[shift:] + paths[:shift]:
                runner = runners[(*cell, path)]
                batch_inputs = inputs[(cell[0], cell[2])]
                if args.gap > 0:
                    time.sleep(args.gap)
                start = time.perf_counter()
                out = runner.logits(*batch_inputs)
                elapsed = time.perf_counter() - start
                if timed:
                    times[(*cell, path)].append(elapsed)
                if round_ == 0:  # outputs against the authors path (fp32 eager), once
                    if path == "authors":
                        reference[cell] = out.clone()
                    else:
                        diffs[(*cell, path)] = out
        if round_ == 0:
            for key, out in list(diffs.items()):
                diffs[key] = float((out - reference[key[:3]]).abs().max())
        busy = meter.other_cores()
        if timed and busy is not None:
            other.append(busy)
        print(f"round {round_ + 1}/{total_rounds} ({'timed' if timed else 'warm-up'}) done, "
              f"{time.perf_counter() - started:.0f} s; other processes kept "
              f"{_f(busy, '.2f', '?')} cores busy", flush=True)
    record.data["timing"] = {"seconds": time.perf_counter() - started,
                             "other_processes_cores_busy_per_timed_round": other}
    rows = []
    for (name, threads, batch, path), values in times.items():
        median = statistics.median(values)
        rows.append({"model": f"{args.backbone}/{name}", "variant": name, "threads": threads, "batch": batch,
                     "path": path, "ms_per_call": median * 1e3, "ms_per_pair": median * 1e3 / batch,
                     "pairs_per_s": batch / median, "ms_per_pair_min": min(values) * 1e3 / batch,
                     "times_ms": [v * 1e3 for v in values],
                     "spread_pct": 100 * (max(values) - min(values)) / median,
                     "max_abs_logit_diff_vs_authors": diffs.get((name, threads, batch, path), 0.0)})
    for row in rows:
        base = next(r for r in rows if r["variant"] == row["variant"] and r["threads"] == row["threads"]
                    and r["batch"] == row["batch"] and r["path"] == "authors")
        row["x_authors"] = base["ms_per_pair"] / row["ms_per_pair"]
    rows.sort(key=lambda r: (MODELS.index(r["variant"]), r["batch"], r["threads"], PATHS.index(r["path"])))
    del runners
    return rows


def row_of(rows: list[dict[str, Any]], variant: str, threads: int, batch: int, path: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["variant"] == variant and r["threads"] == threads and r["batch"] == batch
                 and r["path"] == path), None)


def reference_cell(args: argparse.Namespace) -> tuple[int, int]:
    """(threads, batch) of the goals and of the first-use and end-to-end comparisons: 2 and 4 when measured."""
    threads = 2 if 2 in args.threads else max(args.threads)
    batch = 4 if 4 in args.batches else max(args.batches)
    return threads, batch


# --------------------------------------------------------------------------------------------------
# first use, end to end, accuracy


def first_use(args: argparse.Namespace, rows: list[dict[str, Any]], models: dict[str, dict[str, Any]]) -> list[dict]:
    from mmchange_core.data.windows import DEFAULT_OVERLAP, TileGrid

    threads, batch = reference_cell(args)
    windows = len(TileGrid.plan(args.scene, args.scene, args.size, DEFAULT_OVERLAP))
    result = []
    for name, info in models.items():
        torch_row = row_of(rows, name, threads, batch, "torch")
        for path in args.paths:
            row = row_of(rows, name, threads, batch, path)
            if row is None:
                continue
            setup = 0.0
            loads = info.get("load_seconds", {})
            if path in EXPORT_PATHS:
                setup += info.get("export_fp32_s", 0.0)
            if path == "onnxruntime-int8":
                setup += info.get("int8_total_s", 0.0)
            if path == "openvino-fp32":
                setup += loads.get(f"openvino_compile_s_{threads}t_b{batch}", 0.0)
            elif path.startswith("onnxruntime"):
                setup += loads.get(f"{path}_session_s_{threads}t", 0.0)
            per_scene = windows * row["ms_per_pair"] / 1e3
            entry = {"model": row["model"], "variant": name, "path": path, "scene": args.scene, "windows": windows,
                     "threads": threads, "batch": batch, "network_s_per_scene": per_scene, "setup_s": setup,
                     "first_scene_s": setup + per_scene}
            if path in EXPORT_PATHS and torch_row is not None:
                torch_scene = windows * torch_row["ms_per_pair"] / 1e3
                saved = torch_scene - per_scene
                entry["torch_s_per_scene"] = torch_scene
                entry["break_even_pairs"] = (setup / saved) if saved > 0 else None
            result.append(entry)
    return result


def write_geotiff_pair(folder: Path, size: int, seed: int) -> tuple[Path, Path]:
    """Two uint8 RGB GeoTIFFs (EPSG:32632, 0.5 m): smooth land cover and noise; B has painted blocks."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    path_a, path_b = folder / f"a_{size}.tif", folder / f"b_{size}.tif"
    if path_a.is_file() and path_b.is_file():
        return path_a, path_b
    rng = np.random.default_rng(seed)
    cell = 32
    coarse = rng.integers(40, 200, size=(-(-size // cell), -(-size // cell), 3), dtype=np.uint8)
    base = np.repeat(np.repeat(coarse, cell, axis=0), cell, axis=1)[:size, :size]
    image_a = np.clip(base.astype(np.int16) + rng.integers(-12, 13, size=base.shape, dtype=np.int16), 0, 255)
    image_b = np.clip(base.astype(np.int16) + rng.integers(-12, 13, size=base.shape, dtype=np.int16), 0, 255)
    for _ in range(max(4, (size // 256) ** 2 // 4)):  # new "buildings"
        h, w = rng.integers(8, 64, size=2)
        y, x = rng.integers(0, size - 64, size=2)
        image_b[y:y + h, x:x + w] = rng.integers(150, 255, size=3)
    profile = {"driver": "GTiff", "height": size, "width": size, "count": 3, "dtype": "uint8", "crs": "EPSG:32632",
                   "transform": from_origin(600000, 5000000, 0.5, 0.5), "tiled": True, "blockxsize": 256, "blockysize": 256}
    for path, image in ((path_a, image_a), (path_b, image_b)):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.moveaxis(image.astype(np.uint8), -1, 0))
    return path_a, path_b


def probe_network(runner: Any, batch_inputs: tuple, calls: int, gap: float) -> list[float]:
    """Seconds of ``calls`` network calls on one batch (after one untimed call)."""
    runner.logits(*batch_inputs)
    values = []
    for _ in range(calls):
        if gap > 0:
            time.sleep(gap)
        start = time.perf_counter()
        runner.logits(*batch_inputs)
        values.append(time.perf_counter() - start)
    return values


def end_to_end(args: argparse.Namespace, rows: list[dict[str, Any]], models: dict[str, dict[str, Any]],
               record: Record) -> list[dict[str, Any]]:
    """``predict_paths`` (what ``mmchange predict A B`` calls) on a GeoTIFF pair, against the network alone: the
    same path's runner timed on random windows right before and right after it (and the grid's median)."""
    import torch

    from mmchange_core.data.windows import DEFAULT_OVERLAP, TileGrid
    from mmchange_core.inference.onnx_runner import OnnxRunner
    from mmchange_core.inference.predict import PredictConfig, predict_paths
    from mmchange_core.inference.runner import InferenceRunner
    from mmchange_core.inference.settings import DetectorSettings
    from mmchange_core.models import load_checkpoint

    threads, batch = reference_cell(args)
    try:
        import rasterio  # noqa: F401
    except ImportError:
        record.note("rasterio is not installed; the end-to-end GeoTIFF predict is skipped")
        return []
    t0 = time.perf_counter()
    path_a, path_b = write_geotiff_pair(args.out / "e2e", args.e2e_size, args.seed)
    print(f"e2e inputs {args.e2e_size}x{args.e2e_size} ready in {time.perf_counter() - t0:.0f} s", flush=True)
    windows = len(TileGrid.plan(args.e2e_size, args.e2e_size, args.size, DEFAULT_OVERLAP))
    pixels = args.e2e_size ** 2
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(args.seed + 2)
    result = []
    for name in args.e2e_models:
        info = models[name]
        model, _ = load_checkpoint(info["checkpoint"])
        images = tuple(torch.randn(batch, 3, args.size, args.size, generator=gen) for _ in range(2))
        text = tuple(torch.randn(1, TEXT_DIM, generator=gen) for _ in range(2)) if model.uses_text else (None, None)
        specs = {"torch": info["checkpoint"], "onnxruntime-fp32": info.get("fp32_onnx"),
                 "onnxruntime-int8": info.get("int8_onnx")}
        for path in E2E_PATHS:
            spec = specs[path]
            row = row_of(rows, name, threads, batch, path)
            if spec is None:
                continue
            # the runner predict builds for this file (TorchBackend / OnnxBackend), timed on its own
            runner = InferenceRunner(model, "cpu") if path == "torch" else OnnxRunner(spec, "cpu", threads=threads)
            before = probe_network(runner, images + text, args.e2e_probe, args.gap)
            config = PredictConfig(detector=DetectorSettings(device="cpu", batch_size=batch))
            mask = args.out / "e2e" / f"mask-{name}-{path}.tif"
            start = time.perf_counter()
            pair = predict_paths(spec, path_a, path_b, mask, config=config, overwrite=True)
            wall = time.perf_counter() - start
            after = probe_network(runner, images + text, args.e2e_probe, args.gap)
            del runner
            per_call = statistics.median(before + after)
            network_only = windows / batch * per_call  # every call of the scene holds `batch` windows
            grid_only = None if row is None else windows * row["ms_per_pair"] / 1e3
            entry = {"model": f"{args.backbone}/{name}", "variant": name, "path": path, "size": args.e2e_size,
                     "windows": windows, "threads": threads, "batch": batch, "wall_s": wall,
                     "predict_seconds": {k: round(v, 3) for k, v in pair.seconds.items()},
                     "e2e_pixels_per_s": pixels / wall, "network_only_s": network_only,
                     "network_only_pixels_per_s": pixels / network_only, "e2e_vs_network": network_only / wall,
                     "probe_ms_per_call_before": [v * 1e3 for v in before],
                     "probe_ms_per_call_after": [v * 1e3 for v in after],
                     "network_only_s_from_grid": grid_only,
                     "e2e_vs_network_grid": None if grid_only is None else grid_only / wall,
                     "network_share_inside_predict": pair.seconds.get("network", 0) / max(wall, 1e-9),
                     "change_fraction": pair.change_fraction}
            print(f"e2e {entry['model']} {path}: {wall:.1f} s ({entry['e2e_pixels_per_s'] / 1e6:.3f} Mpx/s); network "
                  f"only {network_only:.1f} s (adjacent probes), ratio {entry['e2e_vs_network']:.2f}; predict's own "
                  f"split {entry['predict_seconds']}", flush=True)
            result.append(entry)
    return result


def train_small_model(args: argparse.Namespace, record: Record) -> tuple[Path, Path]:
    import torch

    from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
    from mmchange_core.training.config import AugmentConfig, TrainConfig
    from mmchange_core.training.loop import train

    data = args.out / "train-data"
    synth = SynthConfig(pairs=args.train_pairs, size=64, seed=7, text_signal=True)
    if not (data / "synth.json").is_file():
        make_synthetic_dataset(data, synth)
    caption(data)
    torch.set_num_threads(max(args.threads))
    config = TrainConfig(dataset=str(data), backbone=args.backbone, variant="full", pretrained=False,
                         iters=args.train_iters, batch_size=min(16, synth.split_counts()["train"]), crop_size=64,
                         lr=args.train_lr,
                         warmup_iters=min(10, args.train_iters // 10), augment=AugmentConfig(), val_split=None,
                         workers=0, device="cpu", seed=2333, project=str(args.out / "train-runs"),
                         name=f"{args.backbone}-full-{args.train_iters}", log_every=10**6)
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start
    if result.best_checkpoint is None:
        raise SystemExit(f"training wrote no checkpoint ({result.run_dir})")
    record.data["trained_here"] = {"checkpoint": str(result.best_checkpoint), "dataset": str(data),
                                   "iters": args.train_iters, "backbone": args.backbone, "train_s": seconds}
    print(f"trained {result.best_checkpoint} in {seconds:.0f} s", flush=True)
    return Path(result.best_checkpoint), data


def certify_trained(args: argparse.Namespace, checkpoint: Path, dataset: Path) -> dict[str, Any]:
    """int8 (calibrated on the train split) against the plain fp32 torch network on the test split."""
    import torch

    from mmchange_core.data.layouts import detect_layout
    from mmchange_core.inference.drift import measure_drift

    torch.set_num_threads(max(args.threads))
    splits = list(detect_layout(dataset).splits)
    calib_split = "train" if "train" in splits else splits[0]
    test_split = "test" if "test" in splits else splits[-1]
    folder = args.out / "trained"
    folder.mkdir(parents=True, exist_ok=True)
    exported = export_pair(checkpoint, folder / "model", dataset, args.calibration_windows, calib_split)
    drift = measure_drift(checkpoint, dataset, test_split, device="cpu", candidate=exported["int8_onnx"])
    return {"checkpoint": str(checkpoint), "dataset": str(dataset), "calibration_split": calib_split,
            "test_split": test_split, **exported, "pairs": drift.pairs, "pixels": drift.pixels,
            "agreement": drift.agreement, "f1_fp32": drift.f1_reference, "f1_int8": drift.f1_fast,
            "f1_diff_points": (drift.f1_fast - drift.f1_reference) * 100,
            "max_abs_prob_diff": drift.max_abs_prob_diff,
            "s_per_pair_fp32_plain_torch": drift.seconds_reference, "s_per_pair_int8": drift.seconds_fast}


def real_agreement(args: argparse.Namespace, name: str, info: dict[str, Any]) -> dict[str, Any]:
    """The random model's int8 vs fp32 masks on real tiles, at the median fp32 probability as threshold."""
    import dataclasses as dc

    import numpy as np
    import torch

    from mmchange_core.data.dataset import read_labelled_pair
    from mmchange_core.data.layouts import detect_layout
    from mmchange_core.inference.detector import ChangeDetector
    from mmchange_core.inference.drift import measure_drift
    from mmchange_core.models import load_checkpoint, save_checkpoint
    from mmchange_core.text.features import checkpoint_text_provider

    torch.set_num_threads(max(args.threads))
    source = detect_layout(args.real)
    copy = args.out / "real"  # a flat copy: the shared folder is never written (captions are stored beside it)
    if copy.exists():
        shutil.rmtree(copy)
    for part in ("A", "B", "label"):
        (copy / part).mkdir(parents=True)
    count = 0
    for split in source.splits:
        for pair in source.pairs(split):
            if pair.label is None:
                continue
            stem = f"pair{count:03d}{Path(pair.name).suffix}"
            for part, src in (("A", pair.image_a), ("B", pair.image_b), ("label", pair.label)):
                shutil.copyfile(src, copy / part / stem)
            count += 1
    model, meta = load_checkpoint(info["checkpoint"])
    if model.uses_text:
        caption(copy)
    detector = ChangeDetector.load(info["checkpoint"], device="cpu")
    pairs = detect_layout(copy).pairs("all")
    provider = checkpoint_text_provider(meta, copy)
    emb = provider(pairs) if provider is not None else None
    probs = []
    for i, pair in enumerate(pairs):
        image_a, image_b, _ = read_labelled_pair(pair, detector.imagery)
        text = (emb[0][i], emb[1][i]) if emb is not None else (None, None)
        probs.append(detector.probability_map(image_a, image_b, *text).ravel())
    threshold = float(np.clip(np.median(np.concatenate(probs)), 1e-4, 1 - 1e-4))
    thresholded = save_checkpoint(args.out / f"real-threshold-{name}.safetensors", model,
                                  dc.replace(meta, threshold=threshold))
    drift = measure_drift(thresholded, copy, "all", device="cpu", candidate=info["int8_onnx"])
    return {"model": f"{args.backbone}/{name}", "source": str(args.real), "pairs": drift.pairs, "pixels": drift.pixels,
            "threshold_median_fp32_prob": threshold, "agreement": drift.agreement,
            "max_abs_prob_diff": drift.max_abs_prob_diff,
            "f1_fp32_random_weights": drift.f1_reference, "f1_int8_random_weights": drift.f1_fast}


# --------------------------------------------------------------------------------------------------
# report


def goals(args: argparse.Namespace, rows: list[dict[str, Any]], e2e: list[dict[str, Any]]) -> list[dict[str, Any]]:
    threads, batch = reference_cell(args)
    variant = "full" if "full" in args.models else args.models[0]
    exact = (args.backbone == "resnet50" and variant == "full" and threads == 2 and batch == 4 and args.size == 256)
    where = f"{args.backbone}/{variant}, batch {batch}, {threads} threads, {args.size} px"
    found = []
    for path, key in (("onnxruntime-int8", "int8_vs_authors"), ("torch", "torch_vs_authors")):
        row = row_of(rows, variant, threads, batch, path)
        value = None if row is None else row["x_authors"]
        found.append({"goal": f"{path} >= {GOALS[key]:g}x authors per pair", "where": where, "value": value,
                      "met": None if value is None else value >= GOALS[key], "goal_configuration": exact})
    for entry in e2e:
        found.append({"goal": f"end-to-end >= {GOALS['e2e_vs_network']:g} of network-only ({entry['path']})",
                      "where": f"{entry['model']}, {entry['size']}x{entry['size']} GeoTIFF pair, batch {entry['batch']}, "
                               f"{entry['threads']} threads", "value": entry["e2e_vs_network"],
                      "met": entry["e2e_vs_network"] >= GOALS["e2e_vs_network"],
                      "goal_configuration": entry["size"] == 4096 and exact})
    return found


def _f(value: Any, fmt: str = ".1f", none: str = "-") -> str:
    return none if value is None else format(value, fmt)


def markdown(data: dict[str, Any]) -> str:
    s = data["settings"]
    m, v = data["machine"], data["versions"]
    lines = ["# CPU speed (benchmarks/cpu_speed.py)", "",
             f"Command: `{data['command']}`", "",
             (f"Machine: {m.get('cpu_model')}, {m.get('usable_cores', m.get('os_cpu_count'))} usable cores "
             f"({m.get('logical_cpus', '?')} logical CPUs listed), {m.get('memory_gib', '?')} GiB, flags "
             f"{' '.join(m.get('cpu_flags', [])) or '-'}; load average at start {m.get('load_average')}; env "
             f"{m.get('env') or '{}'}."),
             (f"Versions: mmchange {v.get('mmchange')}, torch {v.get('torch')}, onnxruntime {v.get('onnxruntime')}, "
             f"onnx {v.get('onnx')}, openvino {v.get('openvino')}, Python {v.get('python')}."), "",
             (f"`authors` = {AUTHORS_NOTE}; `torch` = mmchange's default CPU path; `onnxruntime-*` = the exported "
             f".onnx (fp32, static int8); `openvino-fp32` = OpenVINO on the same fp32 .onnx"
             f"{' (dynamic shapes)' if s.get('openvino_dynamic') else ' (reshaped to each static batch shape)'}."),
             (f"Random weights (BatchNorm randomised), random normalised inputs, {s['size']}x{s['size']} windows; "
             f"median of {s['rounds']} interleaved rounds after {s['warmup']} warm-up round(s); ms per pair = ms per "
             f"call / batch; (x) = speed relative to `authors` in the same row."), ""]
    paths = [p for p in PATHS if any(r["path"] == p for r in data.get("speed", []))]
    if paths:
        lines += ["## Speed (ms per pair, x authors)", "",
                  "| model | batch | threads | " + " | ".join(paths) + " |",
                  "|---|---|---|" + "---|" * len(paths)]
        groups: dict[tuple, dict[str, dict]] = {}
        for r in data["speed"]:
            groups.setdefault((r["model"], r["batch"], r["threads"]), {})[r["path"]] = r
        for (model, batch, threads), by_path in groups.items():
            cells = []
            for p in paths:
                r = by_path.get(p)
                cells.append("-" if r is None else f"{r['ms_per_pair']:.1f} ({r['x_authors']:.2f}x)")
            lines.append(f"| {model} | {batch} | {threads} | " + " | ".join(cells) + " |")
        spread = max((r["spread_pct"] for r in data["speed"]), default=0)
        worst = max((r["max_abs_logit_diff_vs_authors"] for r in data["speed"] if r["path"] != "onnxruntime-int8"),
                    default=0)
        int8 = max((r["max_abs_logit_diff_vs_authors"] for r in data["speed"] if r["path"] == "onnxruntime-int8"),
                   default=None)
        busy = data.get("timing", {}).get("other_processes_cores_busy_per_timed_round") or []
        if busy:
            lines += ["", (f"Other processes kept {statistics.mean(busy):.2f} cores busy on average during the timed "
                          f"rounds (per round: {', '.join(f'{b:.2f}' for b in busy)}); on a shared machine the "
                          f"2-thread cells suffer most (an OpenMP barrier waits for a preempted thread).")]
        if busy and statistics.mean(busy) > 0.3 and m.get("env", {}).get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
            lines += ["", ("**Warning**: other processes were busy and OMP_WAIT_POLICY is not PASSIVE: torch's OpenMP "
                          "threads spin at every barrier while one of them is preempted, so the multi-thread torch "
                          "cells (authors and torch) can be several times slower than with one thread, which inflates "
                          "every ratio to authors. Rerun with OMP_WAIT_POLICY=PASSIVE on a shared machine.")]
        lines += ["", f"Largest (max-min)/median spread of a cell over the rounds: {spread:.0f} %. Max |logit "
                      f"difference| vs authors on the timed batches: fp32 paths {worst:.2g}"
                      + (f", int8 {int8:.3g}" if int8 is not None else "") + ".", ""]
    if data.get("models"):
        lines += ["## Export (first-use cost, seconds)", "",
                  ("| model | export fp32 | read calibration | quantise int8 | int8 export's own speedup vs fp32 ort "
                  "| openvino compile | .onnx MB fp32 / int8 |"), "|---|---|---|---|---|---|---|"]
        for info in data["models"].values():
            ov = [val for key, val in info.get("load_seconds", {}).items() if key.startswith("openvino_compile")]
            lines.append(f"| {info['model']} | {_f(info.get('export_fp32_s'))} | {_f(info.get('calibration_read_s'))} "
                         f"| {_f(info.get('quantize_int8_s'))} | {_f(info.get('int8_export_reported_speedup_vs_fp32'), '.2f')}x "
                         f"| {_f(min(ov) if ov else None)}-{_f(max(ov) if ov else None)} "
                         f"| {_f(info.get('fp32_size_mb'))} / {_f(info.get('int8_size_mb'))} |")
        lines.append("")
    if data.get("first_use"):
        fu = data["first_use"][0]
        lines += [(f"## First use: one {fu['scene']}x{fu['scene']} pair ({fu['windows']} windows of {s['size']} px at "
                  f"the default overlap; batch {fu['batch']}, {fu['threads']} threads)"), "",
                  ("| model | path | setup s (export + quantise + load) | network s per pair | first pair s | "
                  "break-even pairs vs torch |"), "|---|---|---|---|---|---|"]
        for e in data["first_use"]:
            be = e.get("break_even_pairs")
            be_text = "-" if e["path"] not in EXPORT_PATHS else ("never (not faster)" if be is None else f"{be:.1f}")
            lines.append(f"| {e['model']} | {e['path']} | {e['setup_s']:.1f} | {e['network_s_per_scene']:.2f} | "
                         f"{e['first_scene_s']:.1f} | {be_text} |")
        lines.append("")
    if data.get("e2e"):
        e0 = data["e2e"][0]
        lines += [(f"## End to end: `mmchange predict` of a {e0['size']}x{e0['size']} GeoTIFF pair ({e0['windows']} "
                  f"windows, batch {e0['batch']}, {e0['threads']} threads)"), "",
                  ("| model | path | wall s | Mpx/s end to end | network-only s | Mpx/s network only | e2e / network "
                  "| (with the grid's median) | predict's split: network, read, text, write s |"),
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in data["e2e"]:
            ps = e["predict_seconds"]
            split = ", ".join(f"{ps.get(k, 0):.1f}" for k in ("network", "read", "text", "write"))
            lines.append(f"| {e['model']} | {e['path']} | {e['wall_s']:.1f} | {e['e2e_pixels_per_s'] / 1e6:.3f} | "
                         f"{e['network_only_s']:.1f} | {e['network_only_pixels_per_s'] / 1e6:.3f} | "
                         f"{e['e2e_vs_network']:.2f} | {_f(e.get('e2e_vs_network_grid'), '.2f')} | {split} |")
        lines += ["", ("Network-only = windows / batch x the median of the same runner's calls on random windows "
                      f"timed right before and after the predict ({s.get('e2e_probe')} each); e2e / network = "
                      "network-only s / wall s, i.e. end-to-end pixels/s over network-only pixels/s. The wall time "
                      "includes loading the model, captioning (text models) and writing the GeoTIFF mask."), ""]
    acc = data.get("accuracy", {})
    if acc:
        lines += ["## int8 accuracy", ""]
        t = acc.get("trained")
        if t:
            lines += [(f"Trained checkpoint `{t['checkpoint']}` on `{t['dataset']}` ({t['test_split']} split, "
                      f"{t['pairs']} pairs, {t['pixels']:,} px; int8 calibrated on {t['calibration_windows']} "
                      f"windows of its {t['calibration_split']} split), plain fp32 torch vs onnxruntime int8:"), "",
                      "| agreement | F1 fp32 | F1 int8 | F1 difference (points) | max abs prob diff |",
                      "|---|---|---|---|---|",
                      (f"| {t['agreement']:.5%} | {t['f1_fp32']:.4f} | {t['f1_int8']:.4f} | {t['f1_diff_points']:+.2f} "
                      f"| {t['max_abs_prob_diff']:.3g} |"), ""]
        r = acc.get("real")
        if r:
            lines += [(f"Real tiles `{r['source']}` ({r['pairs']} pairs, {r['pixels']:,} px), random {r['model']}: int8 "
                      f"vs fp32 mask agreement {r['agreement']:.4%} at the median fp32 probability as threshold "
                      f"({r['threshold_median_fp32_prob']:.4g}: half the pixels change, the hardest case), max |prob "
                      f"diff| {r['max_abs_prob_diff']:.3g}. (F1 of random weights is meaningless and not reported.)"), ""]
    if data.get("goal_checks"):
        lines += ["## Goals", "", "| goal | where | value | met |", "|---|---|---|---|"]
        for g in data["goal_checks"]:
            met = "-" if g["met"] is None else ("yes" if g["met"] else "**no**")
            suffix = "" if g["goal_configuration"] else " (not the goal's configuration)"
            lines.append(f"| {g['goal']} | {g['where']}{suffix} | {_f(g['value'], '.2f')} | {met} |")
        lines.append("")
    if data.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    stages = data.get("stage_seconds", {})
    if stages:
        lines.append("Stages (s): " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()) + ".")
    lines.append(f"Total wall time: {_f(data.get('total_s'), '.0f', 'unfinished')} s.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    import torch

    record = Record(args.out, args)
    record.data["machine"] = machine_info()
    record.data["versions"] = versions()
    record.save()
    print(f"{record.data['machine'].get('cpu_model')}, {record.data['machine'].get('usable_cores')} usable cores; "
          f"torch {torch.__version__}, onnxruntime {record.data['versions']['onnxruntime']}, openvino "
          f"{record.data['versions']['openvino']}", flush=True)
    if "openvino-fp32" in args.paths and not openvino_available(record):
        args.paths.remove("openvino-fp32")
    real = args.real is not None and not args.skip_real
    need_onnx = any(p in EXPORT_PATHS for p in args.paths) or not args.skip_e2e or real
    need_int8 = "onnxruntime-int8" in args.paths or not args.skip_e2e or real
    torch.set_num_threads(max(args.threads))  # exports measure their sessions with torch's thread count
    calibration = None
    if need_int8:
        t0 = time.perf_counter()
        with record.stage("calibration data"):
            calibration = make_calibration_data(args.out / f"calibration-{args.size}", args.calibration_windows,
                                                args.size, "full" in args.models, args.seed)
        record.data["calibration_data"] = {"root": str(calibration), "seconds": time.perf_counter() - t0,
                                           "windows": args.calibration_windows, "size": args.size}
        print(f"calibration data ready in {time.perf_counter() - t0:.0f} s", flush=True)
    models: dict[str, dict[str, Any]] = {}
    for name in args.models:
        checkpoint = make_random_checkpoint(args.out, args.backbone, name, args.size, args.seed)
        info: dict[str, Any] = {"model": f"{args.backbone}/{name}", "checkpoint": str(checkpoint)}
        if need_onnx:
            with record.stage(f"export {args.backbone}/{name}"):
                info.update(export_pair(checkpoint, args.out / f"{args.backbone}-{name}", calibration,
                                        args.calibration_windows, want_int8=need_int8))
            print(f"{info['model']}: export fp32 {info['export_fp32_s']:.1f} s"
                  + (f", int8 {info['int8_total_s']:.1f} s (reported speedup "
                     f"{_f(info['int8_export_reported_speedup_vs_fp32'], '.2f')}x)" if "int8_total_s" in info else ""),
                  flush=True)
        models[name] = info
        record.data["models"] = models
        record.save()
    with record.stage("speed grid (with sessions and OpenVINO compiles)"):
        rows = time_grid(args, models, record)
    record.data["speed"] = rows
    record.data["first_use"] = first_use(args, rows, models)
    record.save()
    e2e: list[dict[str, Any]] = []
    if not args.skip_e2e:
        with record.stage("end to end"):
            e2e = end_to_end(args, rows, models, record)
            record.data["e2e"] = e2e
    accuracy: dict[str, Any] = {}
    record.data["accuracy"] = accuracy
    trained, trained_data = args.trained, args.trained_data
    if trained is None and args.train_iters > 0:
        with record.stage("training"):
            trained, trained_data = train_small_model(args, record)
    if trained is not None:
        with record.stage("int8 certificate of the trained model"):
            accuracy["trained"] = certify_trained(args, trained, trained_data)
    if real:
        name = "full" if "full" in models else args.models[0]
        if "int8_onnx" in models[name]:
            with record.stage("real tiles"):
                accuracy["real"] = real_agreement(args, name, models[name])
    record.data["goal_checks"] = goals(args, rows, e2e)
    record.data["total_s"] = time.perf_counter() - started
    record.save()
    print("\n" + markdown(record.data), flush=True)
    return record.data


if __name__ == "__main__":
    main()
