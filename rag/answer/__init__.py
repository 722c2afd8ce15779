"""Answer: the one-call pipeline from a question to an answer span."""
from rag.answer.pipeline import Answer, Pipeline, Source, ask, default_pipeline

__all__ = ["Answer", "Pipeline", "Source", "ask", "default_pipeline"]
