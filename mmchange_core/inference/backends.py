"""The one seam from a model spec to a runner: resolve the spec once, pick the backend by the file's format.

Every command that reads a model goes through :func:`open_model` (predict, eval, robustness, the
drift check, benchmark, info, export): a local file, ``hf://OWNER/NAME[@REV]`` (resolved once, into
the Hugging Face cache), an exported ``.onnx`` or an authors' ``.pth``. The result, a
:class:`ModelFile`, carries the local file, its :class:`~mmchange_core.models.checkpoint.CheckpointMeta`
and the :class:`Backend` that runs it. A new runtime is one :class:`Backend` subclass added to
:data:`BACKENDS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mmchange_core.errors import CheckpointError
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.io.hashing import cached_sha256_file
from mmchange_core.models.checkpoint import (
    CheckpointMeta,
    load_checkpoint_file,
    read_checkpoint_file_meta,
    update_checkpoint_meta,
)
from mmchange_core.models.hub import is_hub_spec, resolve_checkpoint
from mmchange_core.models.export import ONNX_SUFFIX
from mmchange_core.models.mmchange import MMChange
from mmchange_core.runs import latest_checkpoint


class Backend:
    """A model file format and the runtime that runs it.

    ``claims`` says whether a local file is of this format; ``read_meta`` reads its metadata without
    the weights; ``runner`` builds the object that turns windows into logits
    (:class:`~mmchange_core.inference.runner.InferenceRunner` or
    :class:`~mmchange_core.inference.onnx_runner.OnnxRunner`).
    """

    #: The name written to summaries, the manifest, the STAC Item and metrics.json.
    name: ClassVar[str] = ""
    #: File suffixes of the format (lower case).
    suffixes: ClassVar[tuple[str, ...]] = ()

    def claims(self, path: Path) -> bool:
        """Whether ``path`` is a file of this format (by its suffix)."""
        return "".join(path.suffixes[-2:]).lower() in self.suffixes or path.suffix.lower() in self.suffixes

    def read_meta(self, path: Path) -> CheckpointMeta:
        """The file's metadata (model config, tile size, threshold, normalisation, text pipeline)."""
        raise NotImplementedError

    def export(self, model: ModelFile, output: Path, *, opset: int, quantize: str | None,
               calibration: Any | None) -> Any:
        """Write ``model`` as an ONNX file (:func:`export_model_file`): torch formats export their network."""
        from mmchange_core.models.export import check_export_output, export_model

        network, meta = model.network()
        return export_model(network, meta, check_export_output(output, model.path), opset=opset, quantize=quantize,
                            calibration=calibration, source=Path(model.spec).name)

    def network(self, path: Path) -> tuple[MMChange, CheckpointMeta]:
        """The torch network and metadata of the file (export, benchmarks); only for torch formats."""
        raise CheckpointError(f"{path} is an {self.name} model, not a torch checkpoint; use the .safetensors "
                              f"checkpoint it was exported from")

    def runner(self, model: ModelFile, settings: DetectorSettings, **options: Any) -> Any:
        """The runner of ``model`` on ``settings.device`` at ``settings.precision``; ``options``: runner extras."""
        raise NotImplementedError

    def update_meta(self, path: Path, **changes: Any) -> CheckpointMeta:
        """Replace metadata fields in the file (e.g. a tuned threshold), keeping the weights."""
        raise NotImplementedError


class TorchBackend(Backend):
    """mmchange checkpoints (``.safetensors``), run by PyTorch (GPU or CPU)."""

    name = "torch"
    suffixes = (".safetensors",)

    def claims(self, path: Path) -> bool:
        return True  # the default: any file that no other backend claims is read as a checkpoint

    def read_meta(self, path: Path) -> CheckpointMeta:
        return read_checkpoint_file_meta(path)

    def network(self, path: Path) -> tuple[MMChange, CheckpointMeta]:
        return load_checkpoint_file(path, "cpu")

    def runner(self, model: ModelFile, settings: DetectorSettings, **options: Any) -> Any:
        from mmchange_core.inference.runner import InferenceRunner

        network, _ = model.network()
        return InferenceRunner(network, settings.device, settings.precision, compile=settings.compile, **options)

    def update_meta(self, path: Path, **changes: Any) -> CheckpointMeta:
        return update_checkpoint_meta(path, **changes)


class ReferenceBackend(TorchBackend):
    """The authors' checkpoints (``.pth``/``.pth.tar``/``.pt``), converted in memory and run by PyTorch."""

    name = "torch"
    suffixes = (".pth", ".pth.tar", ".pt")

    def claims(self, path: Path) -> bool:
        return Backend.claims(self, path)

    def read_meta(self, path: Path) -> CheckpointMeta:
        return self.network(path)[1]

    def network(self, path: Path) -> tuple[MMChange, CheckpointMeta]:
        from mmchange_core.models.convert import StateDictMismatchError, load_reference_model

        try:
            return load_reference_model(path)
        except StateDictMismatchError as exc:
            raise CheckpointError(f"{path} is read as an authors' checkpoint (by its suffix), but {exc}; give the "
                                  f"authors' MMChange .pth or an mmchange checkpoint (.safetensors)") from None

    def update_meta(self, path: Path, **changes: Any) -> CheckpointMeta:
        raise CheckpointError(f"{path} is an authors' checkpoint, which holds no mmchange metadata; convert it "
                              f"first: mmchange convert {path} -o model.safetensors")


class OnnxBackend(Backend):
    """Exported models (``.onnx``, ``mmchange export``), run by onnxruntime on the CPU."""

    name = "onnxruntime"
    suffixes = (ONNX_SUFFIX,)

    def read_meta(self, path: Path) -> CheckpointMeta:
        from mmchange_core.models.export import read_onnx_meta

        return read_onnx_meta(path)

    def runner(self, model: ModelFile, settings: DetectorSettings, **options: Any) -> Any:
        from mmchange_core.errors import InputError
        from mmchange_core.inference.onnx_runner import OnnxRunner

        extra = {k: v for k, v in options.items() if k != "threads"}
        if extra:
            raise InputError(f"{model.spec} is an ONNX model; the torch runner options {sorted(extra)} do not "
                             f"apply to it")
        runner = OnnxRunner(model.path, settings.device, settings.precision, compile=settings.compile,
                            threads=options.get("threads"))
        if runner.precision == "int8":  # a certified export carries its record beside it (best.int8.json)
            from mmchange_core.inference.int8 import certificate_of_file, check_bound

            runner.certificate = certificate_of_file(model.path)
            if runner.certificate is not None:
                check_bound(runner.certificate, model.spec, settings.accept_int8_drift)
        return runner

    def export(self, model: ModelFile, output: Path, *, opset: int, quantize: str | None,
               calibration: Any | None) -> Any:
        """An fp32 export is quantised (``quantize``) without a new export."""
        from mmchange_core.errors import InputError
        from mmchange_core.models.export import quantize_export

        if quantize is None:
            raise InputError(f"{model.spec} is already an ONNX model; export takes an mmchange checkpoint "
                             f"(.safetensors), or quantise the .onnx with --quantize int8")
        return quantize_export(model.path, output, quantize, calibration=calibration)

    def update_meta(self, path: Path, **changes: Any) -> CheckpointMeta:
        from mmchange_core.models.export import update_onnx_meta

        return update_onnx_meta(path, **changes)


#: The backends, asked in order; the first that claims a file runs it (the torch checkpoint is the default).
BACKENDS: list[Backend] = [OnnxBackend(), ReferenceBackend(), TorchBackend()]


def backend_for(path: str | Path) -> Backend:
    """The backend of the local file ``path``."""
    path = Path(path)
    return next(backend for backend in BACKENDS if backend.claims(path))


@dataclass
class ModelFile:
    """A model spec resolved once: the spec as given, its local file, its metadata and its backend."""

    spec: str
    """As the user gave it (a path, or ``hf://OWNER/NAME[@REV]``): the name in summaries and records."""
    path: Path
    """The local file (for ``hf://``, in the Hugging Face cache)."""
    backend: Backend
    meta: CheckpointMeta
    chosen: str | None = None
    """Why this model when none was named: the line said to the user (and recorded), else ``None``."""
    _network: tuple[MMChange, CheckpointMeta] | None = field(default=None, repr=False)

    @property
    def from_hub(self) -> bool:
        """Whether the spec names a Hub model (its file is the shared cache's and must not change)."""
        return is_hub_spec(self.spec)

    def sha256(self) -> str:
        """sha256 of the local file (cached by path, size and modification time)."""
        return cached_sha256_file(self.path)

    def network(self) -> tuple[MMChange, CheckpointMeta]:
        """The torch network of a torch format (read once)."""
        if self._network is None:
            self._network = self.backend.network(self.path)
        return self._network

    def runner(self, settings: DetectorSettings, **options: Any) -> Any:
        """The runner that this model's backend builds for ``settings``."""
        return self.backend.runner(self, settings, **options)

    def update_meta(self, **changes: Any) -> CheckpointMeta:
        """Replace metadata fields in the file (refused for Hub models: see ``check_updatable``)."""
        from mmchange_core.models.checkpoint import check_updatable

        check_updatable(self.spec)
        before = self.sha256() if self.backend.name == "torch" else None
        self.meta = self.backend.update_meta(self.path, **changes)
        if before is not None:  # the weights are the same: its int8 export stays valid
            from mmchange_core.inference.int8 import rebind_beside

            rebind_beside(self.path, before, self.sha256())
        return self.meta


def open_model(spec: str | Path | ModelFile | None, *, project: str | Path = "runs") -> ModelFile:
    """Resolve ``spec`` once (``hf://`` into the cache) and read its metadata through the backend of its format.

    Without a spec (``None``) it is the best checkpoint of the most recent training run under ``project``
    (:func:`~mmchange_core.runs.latest_checkpoint`), and :attr:`ModelFile.chosen` says so.
    """
    if isinstance(spec, ModelFile):
        return spec
    chosen = None
    if spec is None or str(spec) == "":
        spec = latest_checkpoint(project)
        chosen = f"no --checkpoint given: using {spec}, the best checkpoint of the most recent training run"
    path = resolve_checkpoint(spec)
    backend = backend_for(path)
    return ModelFile(str(spec), path, backend, backend.read_meta(path), chosen)


def read_model_meta(spec: str | Path) -> CheckpointMeta:
    """The metadata of any model file or spec (checkpoint, ``.onnx``, authors' ``.pth``, ``hf://``)."""
    return open_model(spec).meta


def update_model_meta(spec: str | Path | ModelFile, **changes: Any) -> CheckpointMeta:
    """Replace metadata fields (e.g. a tuned ``threshold``) in any model file, keeping its weights."""
    return open_model(spec).update_meta(**changes)


def export_model_file(spec: str | Path | ModelFile, output: str | Path, *, opset: int | None = None,
                      quantize: str | None = None, calibration: Any | None = None) -> Any:
    """Export a model (a checkpoint, ``hf://``, an authors' ``.pth``) to the ONNX file ``output``; an fp32
    ``.onnx`` from an earlier export is quantised without a new export (``quantize`` needed)."""
    from mmchange_core.models.export import DEFAULT_OPSET, check_export_options, check_export_output

    opset = DEFAULT_OPSET if opset is None else opset
    check_export_options(opset, quantize)
    check_export_output(output)  # the suffix, before the model is read
    model = open_model(spec)
    return model.backend.export(model, Path(output), opset=opset, quantize=quantize, calibration=calibration)
