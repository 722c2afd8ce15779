"""Soak benchmark: many questions through the running chat's API, the
server's resident memory sampled as they go, to tell a leak from a plateau.

It starts ``python ui.py`` on a free port (or uses ``--url`` and ``--pid`` of
a server already running), asks the questions one after another through
gradio_client, as an API user would, and reads the server's RSS from
``/proc`` every ``every`` questions."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from rag.evaluation.qa import QAItem

UI_SCRIPT = Path(__file__).resolve().parents[2] / "ui.py"


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` (Linux), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(url: str, server: subprocess.Popen | None, timeout_s: float = 300):
    """A gradio_client for ``url`` once the server answers (models loaded)."""
    from gradio_client import Client

    deadline = time.monotonic() + timeout_s
    while True:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the chat server exited with code {server.returncode}")
        try:
            client = Client(url, verbose=False)
            client.predict("warm-up", api_name="/ask")  # waits for the models
            return client
        except Exception:  # not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def soak(items: list[QAItem], total: int = 1000, every: int = 100, per_session: int = 10, url: str | None = None,
         pid: int | None = None) -> dict:
    """Ask ``total`` questions (cycling through ``items``), ``per_session`` from
    each new client as users come and go, and sample the server's RSS."""
    server = None
    if url is None:
        if not UI_SCRIPT.exists():
            raise FileNotFoundError(f"{UI_SCRIPT} is missing: run from a clone of the repository, "
                                    "or give --url and --pid")
        port = _free_port()
        server = subprocess.Popen([sys.executable, str(UI_SCRIPT), "--port", str(port)], cwd=UI_SCRIPT.parent,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
        url, pid = f"http://127.0.0.1:{port}/", server.pid
    if pid is None:
        raise ValueError("give the server's --pid with --url, so its memory can be read")
    from gradio_client import Client

    try:
        client = _connect(url, server)
        samples = [{"questions": 0, "rss_mb": round(rss_mb(pid), 1)}]
        began = time.perf_counter()
        for asked in range(1, total + 1):
            if asked % per_session == 0:
                client = Client(url, verbose=False)  # a new user: a new session on the server
            item = items[(asked - 1) % len(items)]
            client.predict(item.question, item.history, api_name="/ask")
            if asked % every == 0:
                samples.append({"questions": asked, "rss_mb": round(rss_mb(pid), 1),
                                "seconds": round(time.perf_counter() - began, 1)})
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    after_first = [s["rss_mb"] for s in samples[1:]]
    return {
        "questions": total,
        "sessions": total // per_session,
        "samples": samples,
        "rss_first_mb": samples[0]["rss_mb"],
        "rss_last_mb": samples[-1]["rss_mb"],
        # Growth after the first batch, when caches and lazy paths are filled: a leak keeps climbing here.
        "growth_after_first_batch_mb": round(after_first[-1] - after_first[0], 1) if after_first else 0.0,
        "questions_per_s": round(total / samples[-1]["seconds"], 2),
    }
