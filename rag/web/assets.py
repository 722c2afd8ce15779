"""The page's style and scripts (``chat.css``, ``chat.js``, ``uploads.js`` beside
this file), given to Gradio at launch."""
from __future__ import annotations

import json
from importlib import resources

from rag.documents import SUPPORTED_SUFFIXES
from rag.documents.refusals import REASONS
from rag.settings import Settings

# The page's address names the collection picked, so that a link or a reload opens it again.
ADDRESS_JS = """(name) => {
  const address = new URL(window.location.href);
  address.searchParams.set("collection", name);
  window.history.replaceState(null, "", address);
}"""
# The question box opens once the page has restored this browser's conversation, the cursor in it.
FOCUS_QUESTION_JS = """() => document.querySelector("#rag-question textarea")?.focus()"""


def asset(name: str) -> str:
    return resources.files("rag.web").joinpath(name).read_text(encoding="utf-8")


def page_style() -> str:
    return asset("chat.css")


def page_head(settings: Settings) -> str:
    """The page's scripts, given what an upload may be (the refusals worded as the server words them)."""
    english_and_french = {key: " · ".join(REASONS[key]) for key in ("too_large", "unsupported", "no_suffix")}
    supported = ", ".join(SUPPORTED_SUFFIXES)
    upload = {
        "limit": settings.max_upload_mb * 2**20, "suffixes": list(SUPPORTED_SUFFIXES),
        "too_large": english_and_french["too_large"].replace("{size:.1f}", "{size}")
        .replace("{limit:.0f}", str(settings.max_upload_mb)),
        "unsupported": english_and_french["unsupported"].replace("{supported}", supported),
        "no_suffix": english_and_french["no_suffix"].replace("{supported}", supported),
    }
    limits = json.dumps(upload, ensure_ascii=False).replace("</", "<\\/")
    return (f"<script>\n{asset('chat.js')}</script>\n"
            f"<script>\n{asset('uploads.js').replace('/*UPLOAD*/null', limits)}</script>\n")
