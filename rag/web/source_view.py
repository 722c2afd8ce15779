"""The cited document as a page of its own: the stored text, page breaks
marked, the answer highlighted and scrolled to (``#answer``). It shows what
the collection stored, looked up by document id in the manifest, so no name
from a request ever reaches the file system."""
from __future__ import annotations

import html

from rag.answer.language import detect_language
from rag.documents import Document
from rag.web.pieces import cut_at_pages

# Light and dark follow the system; contrast stays above 4.5:1 on both.
_STYLE = """
:root { color-scheme: light dark; }
body { font: 1rem/1.6 system-ui, sans-serif; max-width: 46rem; margin: 0 auto; padding: 1rem;
       background: #ffffff; color: #1c1917; }
h1 { font-size: 1.25rem; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; }
mark { background: #fde68a; color: #1c1917; padding: 0 .1em; border-radius: 3px; }
.page { display: block; margin: 1.2em 0 .4em; padding-top: .4em; border-top: 1px solid #a1a1aa;
        color: #3f3f46; font-size: .85rem; }
@media (prefers-color-scheme: dark) {
  body { background: #18181b; color: #f4f4f5; }
  mark { background: #a16207; color: #fefce8; }
  .page { color: #d4d4d8; border-color: #71717a; }
}
"""


def source_page(document: Document, span: tuple[int, int] | None = None) -> str:
    """The whole HTML page for ``document``, with ``span`` (character offsets
    into its text, when they fall inside it) highlighted."""
    text = document.text
    if span is not None and not (0 <= span[0] < span[1] <= len(text)):
        span = None
    language = detect_language(text[:2000])
    body, answer_marked = [], False
    pages = document.pages
    if pages and pages[0] == 0:
        body.append("<span class='page' id='page-1'>Page 1</span>")
    for piece in cut_at_pages(text, 0, pages, span):
        if piece.kind == "page":
            body.append(f"<span class='page' id='page-{piece.page}'>Page {piece.page}</span>")
        elif piece.kind == "answer":
            anchor = "" if answer_marked else " id='answer'"
            answer_marked = True
            body.append(f"<mark{anchor}>{html.escape(piece.text)}</mark>")
        else:
            body.append(html.escape(piece.text))
    title = html.escape(document.title or document.id)
    return (f"<!doctype html><html lang='{language}'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{title}</h1><div class='text'>{''.join(body)}</div></body></html>")
