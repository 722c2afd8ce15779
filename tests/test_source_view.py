"""The cited-document view: page marks, the highlighted span, and what a request may name."""
from __future__ import annotations

import re

from rag.documents import Document
from rag.web.pieces import Piece, cut_at_pages
from rag.web.source_view import source_page


def test_a_passage_is_cut_at_each_page_inside_it_and_around_the_answer():
    text = "abcdefghij"  # found at offset 10 of a document whose pages start at 0, 13 and 30
    assert cut_at_pages(text, 10, [0, 13, 30], (12, 15)) == [
        Piece("text", "ab"), Piece("answer", "c"), Piece("page", page=2), Piece("answer", "de"),
        Piece("text", "fghij")]
    assert cut_at_pages(text, 0, [], None) == [Piece("text", text)]
    assert "".join(p.text for p in cut_at_pages(text, 5, [0, 7, 9, 12], (6, 40))) == text


def test_the_document_page_escapes_its_text_and_marks_pages_and_answer():
    text = "Page one <script>alert(1)</script>.\nLa société Vendrix fut fondée à Lyon."
    document = Document(id="report.pdf", title="Rapport <b>annuel</b>", text=text, pages=(0, 36))
    start = text.index("Lyon")
    shown = source_page(document, (start, start + 4))
    assert "<script>" not in shown and "&lt;script&gt;" in shown and "<b>" not in shown
    assert re.findall(r"id='([\w-]+)'", shown) == ["page-1", "page-2", "answer"]
    assert "<mark id='answer'>Lyon</mark>" in shown and "<html lang='fr'>" in shown


def test_offsets_outside_the_text_highlight_nothing():
    document = Document(id="note.txt", title="note", text="Short text.")
    for span in [(5, 500), (-3, 2), (4, 4), None]:
        assert "<mark" not in source_page(document, span)


def test_an_excerpt_keeps_the_answer_and_cuts_at_spaces():
    from rag.answer.excerpt import excerpt_bounds

    text = " ".join(f"word{i}" for i in range(200))
    start = text.index("word100")
    end = start + len("word100")
    first, last = excerpt_bounds(text, start, end, around=50)
    assert first <= start and end <= last and start - first <= 50 and last - end <= 50
    assert text[first - 1] == " " and text[last] == " "  # whole words only
    assert excerpt_bounds("short text", 0, 5) == (0, 10)
