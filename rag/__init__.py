"""Bilingual (English/French) extractive question answering over documents.

    from rag import ask
    answer = ask("Qui a fondé Mistral ?")
"""
from rag.answer import Answer, Pipeline, Source, ask, default_pipeline
from rag.documents import Chunk, Document
from rag.settings import Settings

__all__ = ["Answer", "Chunk", "Document", "Pipeline", "Settings", "Source", "ask", "default_pipeline"]
