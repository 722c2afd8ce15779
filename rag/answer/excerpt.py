"""How much of a passage to show around its answer, the same in the chat and the terminal."""
from __future__ import annotations


def excerpt_bounds(text: str, start: int, end: int, around: int = 200) -> tuple[int, int]:
    """Where to cut ``text`` so that about ``around`` characters show on each side of
    ``text[start:end]``, cut at a space: on a phone or in a terminal the answer
    then sits in the first lines of its passage (the whole passage is in the
    answer's sources, the whole document a link away in the chat)."""
    first, last = max(0, start - around), min(len(text), end + around)
    if first > 0:
        space = text.find(" ", first, start)
        first = space + 1 if space != -1 else first
    if last < len(text):
        space = text.rfind(" ", end, last)
        last = space if space != -1 else last
    return first, last


def ellipses(text: str, first: int, last: int) -> tuple[str, str]:
    """The marks before and after ``text[first:last]`` that say text was cut there."""
    return ("… " if first > 0 else ""), (" …" if last < len(text) else "")
