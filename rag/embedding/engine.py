"""The engine that runs the built-in models' ONNX exports: OpenVINO on the CPU,
multiplying in bfloat16 where the CPU does so natively (AVX512-BF16 or AMX),
in float32 elsewhere.

Compiled models are cached (OpenVINO's model cache, keyed by the graph, the
settings and OpenVINO's own version, so a stale entry is never used), so a
cold start loads a compiled blob instead of compiling again. One compiled
model serves every thread: each call takes an inference request of its own
from a small pool.
"""
from __future__ import annotations

import logging
import queue
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "f32")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux), empty where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


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


class CompiledGraph:
    """An ONNX graph compiled by OpenVINO for the CPU; :meth:`run` takes the
    inputs by name and returns the outputs in the graph's order."""

    def __init__(self, path: Path, precision: str = "auto", threads: int | None = None,
                 cache_dir: Path | None = None, hint: str = "LATENCY") -> None:
        import openvino

        self.path, self.precision = Path(path), inference_precision(precision)
        config = {"INFERENCE_PRECISION_HINT": self.precision, "PERFORMANCE_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        if cache_dir is not None and _writable(cache_dir):
            config["CACHE_DIR"] = str(cache_dir)
        self._model = openvino.Core().compile_model(str(self.path), "CPU", config)
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
