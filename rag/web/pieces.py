"""A stretch of a document cut where its pages start and around the answer, so
the reply and the document view mark page breaks and highlight the same span."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple


class Piece(NamedTuple):
    kind: Literal["text", "answer", "page"]
    text: str = ""
    page: int = 0  # for a "page" piece: the number (from 1) of the page that starts here


def cut_at_pages(text: str, offset: int, page_starts: Sequence[int],
                 span: tuple[int, int] | None = None) -> list[Piece]:
    """``text`` (found at ``offset`` in its document) as pieces in order: plain
    text, the answer ``span`` (document offsets), and a page mark before each
    page that starts inside it. A PDF's first page starting the text is not
    marked: the reply's heading already names it."""
    end = offset + len(text)
    starts = {s: number for number, s in enumerate(page_starts, start=1) if offset < s < end}
    cuts = set(starts)
    if span is not None:
        cuts |= {max(offset, min(end, edge)) for edge in span}
    pieces: list[Piece] = []
    position = offset
    for cut in sorted(cuts | {end}):
        if cut > position:
            inside = span is not None and span[0] <= position and cut <= span[1]
            pieces.append(Piece("answer" if inside else "text", text[position - offset:cut - offset]))
            position = cut
        if cut in starts:
            pieces.append(Piece("page", page=starts[cut]))
    return pieces

