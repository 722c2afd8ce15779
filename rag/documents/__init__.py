"""Documents, their passages, and the converters that turn files into them."""
from rag.documents.converters import SUPPORTED_SUFFIXES, load_document
from rag.documents.isolation import ReadLimits, read_document
from rag.documents.model import (
    DEFAULT_DOCUMENT, Chunk, Document, check_documents, default_documents, parse_document, safe_id,
)
from rag.documents.refusals import Refusal, UnreadableDocument

__all__ = ["DEFAULT_DOCUMENT", "SUPPORTED_SUFFIXES", "Chunk", "Document", "ReadLimits", "Refusal",
           "UnreadableDocument", "check_documents", "default_documents", "load_document", "parse_document",
           "read_document", "safe_id"]
