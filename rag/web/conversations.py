"""The conversations a browser keeps (Gradio's BrowserState), one per collection:
what is saved after each change, and what is trusted of it on the way back."""
from __future__ import annotations

from typing import Any

# What a browser keeps of its conversations (its local storage holds a few megabytes).
KEPT_MESSAGES, KEPT_COLLECTIONS = 40, 8


def message_text(content: Any) -> str | None:
    """A chat message's text, as Gradio sends it back (a string or a list of text parts); None if it is neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return None


def restored(saved: Any, collection: str) -> tuple[list[dict], list[str]]:
    """The conversation a browser kept for ``collection`` (messages shown, questions asked),
    or an empty one when what it kept is not of that shape."""
    kept = saved.get(collection) if isinstance(saved, dict) else None
    shown = kept.get("shown") if isinstance(kept, dict) else None
    questions = kept.get("questions") if isinstance(kept, dict) else None
    if not isinstance(shown, list) or not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        return [], []
    messages = [{"role": m.get("role"), "content": message_text(m.get("content"))} for m in shown if isinstance(m, dict)]
    if len(messages) != len(shown) or any(m["role"] not in ("user", "assistant") or m["content"] is None
                                          for m in messages):
        return [], []
    return messages, questions


def kept(saved: Any, collection: str, shown: list[dict], questions: list[str]) -> dict:
    """What the browser keeps after a change: this collection's conversation (its latest
    messages), last, after those of the other collections it holds."""
    others = {name: value for name, value in (saved.items() if isinstance(saved, dict) else ())
              if name != collection and isinstance(name, str)}
    messages = [{"role": m["role"], "content": message_text(m["content"])} for m in shown][-KEPT_MESSAGES:]
    asked = sum(m["role"] == "user" for m in messages)  # the trash button empties the chat before the questions
    conversation = {"shown": messages, "questions": list(questions)[-asked:] if asked else []}
    return dict([*list(others.items())[-(KEPT_COLLECTIONS - 1):], (collection, conversation)])
