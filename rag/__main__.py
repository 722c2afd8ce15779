"""``python -m rag``: the same as the ``rag`` command."""
from rag.cli import run

run()
