"""What the web chat shows beside its replies: the cited document, opened at the answer."""
from rag.web.pieces import Piece, cut_at_pages
from rag.web.source_view import source_page

__all__ = ["Piece", "cut_at_pages", "source_page"]
