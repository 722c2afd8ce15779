"""Documents, their passages, and the converters that turn files into them."""
from rag.documents.converters import SUPPORTED_SUFFIXES, load_document
from rag.documents.model import (
    DEFAULT_DOCUMENT, Chunk, Document, check_documents, default_documents, parse_document, safe_id,
)

__all__ = ["DEFAULT_DOCUMENT", "SUPPORTED_SUFFIXES", "Chunk", "Document", "check_documents", "default_documents",
           "load_document", "parse_document", "safe_id"]
