"""The engines that run the built-in models' ONNX exports, and which one a CPU gets.

Each is kept for the CPUs where it was measured better (README, "Speed and
memory"): **OpenVINO** where the CPU multiplies bfloat16 natively (AVX512-BF16
or AMX), since it computes in bfloat16 there and onnxruntime's CPU engine
cannot; **onnxruntime** elsewhere, where both compute in float32 at the same
speed and onnxruntime needs about 200 MB less memory. ``RAG_RUNTIME`` names
one of them instead of ``auto``; ``RAG_PRECISION`` sets OpenVINO's precision.

Both take the inputs by name and return the outputs in the graph's order,
from any thread.
"""
from __future__ import annotations

import logging
import queue
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.settings import PRECISIONS

log = logging.getLogger(__name__)

ENGINES = ("openvino", "onnxruntime")
INT8_COPY = "model-int8.xml"  # the name of a copy with int8 weights (:func:`compact_copy`)
INT8_ONNX = "int8.onnx"  # the int8 graph on its way to that copy


def cpu_info(field: str) -> str:
    """A field of the first CPU in /proc/cpuinfo (Linux), empty where it cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith(field)), "")
    except OSError:
        return ""
    return line.partition(":")[2].strip()


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), empty where they cannot be read."""
    return set(cpu_info("flags").split())


def cpu_model() -> str | None:
    """The CPU's model name: a virtual machine with the same flags may run on another vendor's cores."""
    return cpu_info("model name") or None


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def inference_precision(requested: str = "auto") -> str:
    """``bf16`` or ``f32``: what ``auto`` means on this CPU, or what was asked."""
    if requested not in PRECISIONS:
        raise ValueError(f"the precision must be one of {', '.join(PRECISIONS)}, not {requested!r}")
    if requested == "auto":
        return "bf16" if cpu_has_fast_bf16() else "f32"
    return requested


def choose_engine(runtime: str = "auto", precision: str = "auto") -> str:
    """The engine for ``runtime`` (``auto``, or an engine's name): OpenVINO
    when it will compute in bfloat16, onnxruntime otherwise."""
    if runtime in ENGINES:
        return runtime
    return "openvino" if inference_precision(precision) == "bf16" else "onnxruntime"


class Graph(Protocol):
    precision: str
    reading: str  # engine, precision and, where int8, the weights it reads: names results cached per reading

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


def load_graph(path: Path, engine: str, precision: str = "auto", threads: int | None = None,
               compiled_cache: Path | None = None, int8_weights: bool = False) -> Graph:
    """The ONNX graph at ``path`` on ``engine``; ``int8_weights``: OpenVINO in bf16
    reads its matrix products' weights in int8 (:mod:`rag.embedding.int8_weights`)."""
    if engine == "openvino":
        return OpenVinoGraph(path, precision, threads, compiled_cache, int8_weights)
    return OnnxRuntimeGraph(path, threads)


class OnnxRuntimeGraph:
    """An onnxruntime CPU session with every graph optimization; f32."""

    precision = "f32"
    reading = "onnxruntime-f32"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: the embedder's would otherwise
        # keep the cores busy while the reader runs right after it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, feeds)


class OpenVinoGraph:
    """An ONNX graph compiled by OpenVINO for the CPU, in bf16 or f32. The
    compiled model is cached (OpenVINO's model cache, keyed by the graph, the
    settings and OpenVINO's version, so a stale entry is never used), in bf16
    from a copy of the graph with fp16 weights (:func:`compact_copy`),
    its matrix products' weights in int8 where ``int8_weights`` asks it;
    each call takes an inference request of its own from a small pool."""

    def __init__(self, path: Path, precision: str = "auto", threads: int | None = None,
                 cache_dir: Path | None = None, int8_weights: bool = False) -> None:
        import openvino

        self.precision = inference_precision(precision)
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        source = path
        if cache_dir is not None and _writable(cache_dir):
            config["CACHE_DIR"] = str(cache_dir)
            if self.precision == "bf16":
                source = compact_copy(path, cache_dir, int8_weights)
        if source.name == INT8_COPY:
            # activations quantized on the fly, per group of 128 values, so the int8 weights are
            # multiplied in int8 (measured fastest of 32, 128, 384 and 1536; 0 turns it off)
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = 128
        try:
            self._model = openvino.Core().compile_model(str(source), "CPU", config)
        except RuntimeError as error:
            if source == path:
                raise
            log.warning("The copy of %s (%s) did not compile (%s); compiling the export itself", path,
                        source.name, error)
            shutil.rmtree(source.parent, ignore_errors=True)
            config.pop("DYNAMIC_QUANTIZATION_GROUP_SIZE", None)
            source = path
            self._model = openvino.Core().compile_model(str(path), "CPU", config)
        self.reading = f"openvino-{self.precision}{'-int8' if source.name == INT8_COPY else ''}"
        self._outputs = list(self._model.outputs)
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._model.create_infer_request()
        try:
            results = request.infer(feeds)
            return [results[output] for output in self._outputs]  # copies: the request is reused
        finally:
            self._idle.put(request)


def compact_copy(onnx: Path, folder: Path, int8_weights: bool = False) -> Path:
    """``onnx`` saved in OpenVINO's own format with compact weights, made once in ``folder``:
    fp16, or with ``int8_weights`` its matrix products' weights in int8 and the rest in fp16.

    Computing in bfloat16 rounds the weights to 8 bits of mantissa anyway; read
    from fp16 (11) rather than f32 they leave the compiled model about 100 MB
    smaller (README, "Speed and memory"), at the same speed. Named by the
    export's size and modification time, so a new export gets a new copy; the
    export itself where the copy cannot be written."""
    import openvino

    stat = onnx.stat()
    kind = f"{onnx.stem}.int8" if int8_weights else onnx.stem
    what = "int8" if int8_weights else "fp16"
    target = folder / f"{kind}-{stat.st_size}-{stat.st_mtime_ns}" / (INT8_COPY if int8_weights else "model.xml")
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    try:
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{onnx.stem}-"))
    except OSError as error:
        log.warning("No %s copy of %s (%s); compiling the export itself", what, onnx, error)
        return onnx
    try:
        openvino.save_model(_read_model(onnx, staging, int8_weights), str(staging / target.name),
                            compress_to_fp16=True)
        (staging / INT8_ONNX).unlink(missing_ok=True)
        for earlier in folder.glob(f"{kind}-*"):  # copies of earlier exports
            if earlier != target.parent:
                shutil.rmtree(earlier, ignore_errors=True)
        staging.rename(target.parent)
    except (OSError, RuntimeError) as error:
        if target.is_file():  # another process made it meanwhile
            return target
        log.warning("No %s copy of %s (%s); compiling the export itself", what, onnx, error)
        return onnx
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _read_model(onnx: Path, staging: Path, int8_weights: bool):
    """The export as an OpenVINO model, its matrix products' weights made int8 first if asked."""
    import openvino

    if not int8_weights:
        return openvino.Core().read_model(str(onnx))
    import onnx as onnx_format

    from rag.embedding.int8_weights import int8_matmul_weights

    graph = onnx_format.load(str(onnx))
    int8_matmul_weights(graph)
    onnx_format.save(graph, str(staging / INT8_ONNX))
    return openvino.Core().read_model(str(staging / INT8_ONNX))


def _writable(folder: Path) -> bool:
    """Whether the compiled models can be cached in ``folder`` (else each start compiles them)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".writable"
        probe.touch()
        probe.unlink()
        return True
    except OSError as error:
        log.warning("Compiled models are not cached (%s: %s); each start compiles them", folder, error)
        return False
