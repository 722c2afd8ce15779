"""One chat reply as HTML: the answer in bold with its confidence, its passage
around it with the span highlighted and page breaks marked, a link to the
document opened at the answer, and the other passages read, collapsed. Every
text from a document or a user is escaped: shown as typed, never as markup."""
from __future__ import annotations

import html
from collections.abc import Sequence
from urllib.parse import urlencode

from rag.answer import Answer
from rag.answer.excerpt import ellipses, excerpt_bounds
from rag.answer.wording import percent, quoted_note, words_for
from rag.web.pieces import cut_at_pages

_MARKUP = {ch: f"&#{ord(ch)};" for ch in "\\`*_{}[]()#+-!|~<>&\"'$"} | {"\n": "<br>"}


def escape(text: str) -> str:
    """Turn every HTML and Markdown special character into an entity, so
    document or user text is shown exactly as typed and never as markup."""
    return "".join(_MARKUP.get(ch, ch) for ch in text)


def highlighted_passage(answer: Answer, page_starts: Sequence[int] = ()) -> str:
    """The answer's passage around it, the answer marked in place and a page mark where a page starts inside it."""
    source = answer.sources[answer.source_index]
    first, last = excerpt_bounds(source.text, answer.start - source.start, answer.end - source.start)
    page = words_for(answer.language)["page"]
    shown = {"text": lambda p: escape(p.text), "answer": lambda p: f"<mark>{escape(p.text)}</mark>",
             "page": lambda p: f"<span class='rag-page'>{page} {p.page}</span>"}
    pieces = cut_at_pages(source.text[first:last], source.start + first, page_starts, (answer.start, answer.end))
    before, after = ellipses(source.text, first, last)
    return before + "".join(shown[p.kind](p) for p in pieces) + after


def source_link(answer: Answer, words: dict[str, str], collection: str | None) -> str:
    """A link to the cited document opened at the answer (the page ``/source`` serves)."""
    query = urlencode({"collection": collection, "doc": answer.doc_id, "start": answer.start, "end": answer.end}
                      if collection else {"doc": answer.doc_id, "start": answer.start, "end": answer.end})
    return (f"<p class='rag-open'><a href='source?{html.escape(query)}#answer' target='_blank' rel='noopener'>"
            f"{words['open']}</a></p>")


def passage_list(summary: str, passages: list[str]) -> str:
    """Passages under a collapsed heading: there if the user wants to check, out of the way if not."""
    if not passages:
        return ""
    quotes = "".join(f"<blockquote>{escape(text)}</blockquote>" for text in passages)
    return f"<details><summary>{summary} ({len(passages)})</summary>{quotes}</details>"


def source_label(answer: Answer, words: dict[str, str]) -> str:
    """"Source passage · rapport annuel, page 2": where the answer was read."""
    where = escape(answer.title or answer.doc_id or "")
    if answer.page:
        where += f", {words['page']} {answer.page}"
    return f"{words['source']} · {where}" if where else words["source"]


def render(answer: Answer, page_starts: Sequence[int] = (), collection: str | None = None) -> str:
    """One chat reply, in the question's language (its ``lang`` too): the answer
    and its confidence, or a plain "does not say", then the passages read; its
    source links to the document in ``collection`` (the launch one when None)."""
    words = words_for(answer.language)
    warnings = "".join(f"<p><em>{escape(w)}</em></p>" for w in answer.warnings)
    if not answer.answered:
        read = passage_list(words["read"], [s.text for s in answer.sources])
        return f"<div class='rag-reply' lang='{answer.language}'>{warnings}<p>{words['no_answer']}</p>{read}</div>"
    source = answer.sources[answer.source_index]
    note = quoted_note(answer.language, source.text)
    others = [s.text for i, s in enumerate(answer.sources) if i != answer.source_index]
    return (
        f"<div class='rag-reply' lang='{answer.language}'>{warnings}"
        f"<p><strong>{escape(answer.text)}</strong> "
        f"<small class='rag-meta'>({words['confidence']} {percent(answer.score, answer.language)})</small></p>"
        + (f"<p><small class='rag-note'>{note}</small></p>" if note else "")
        + f"<details open><summary>{source_label(answer, words)}</summary>"
        f"<blockquote>{highlighted_passage(answer, page_starts)}</blockquote>{source_link(answer, words, collection)}"
        f"</details>{passage_list(words['other_read'], others)}</div>"
    )


def failure(message: str) -> str:
    return f"<p class='rag-failed'>{escape(message)}</p>"
