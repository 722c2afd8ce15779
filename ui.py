"""The web chat: ``python ui.py`` (options: ``--host``, ``--port``, ``--collection``,
``--document``, ``--share``).

Every answer shows the exact words of the document in bold, the confidence,
and the passage it came from with the answer highlighted in place, named by
its document (and page); the other passages read are listed, collapsed,
under it. The Documents panel lists the collection's documents, takes
uploads (several files at once, with progress) and removes documents. The chat function is also an
API endpoint, ``/ask``, and ``/ask_json`` returns the answer as data and takes
the conversation's earlier questions::

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    client.predict("Who founded Mistral?", api_name="/ask")
    client.predict("And who is the chief scientist?", ["Who founded Mistral?"], api_name="/ask_json")
"""
from __future__ import annotations

import argparse
import html
import json
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

# The chat runs offline: Gradio reports nothing to its servers unless the user asks for it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from gradio.components.api_component import Api  # noqa: E402
from fastapi.responses import HTMLResponse  # noqa: E402
from gradio.data_classes import ListFiles  # noqa: E402

from rag.answer import Answer, Pipeline  # noqa: E402
from rag.answer.excerpt import excerpt_bounds  # noqa: E402
from rag.answer.language import detect_language  # noqa: E402
from rag.answer.pipeline import clean_question  # noqa: E402
from rag.answer.wording import both_languages, percent, quoted_note, words_for  # noqa: E402
from rag.documents import SUPPORTED_SUFFIXES, read_document  # noqa: E402
from rag.documents.refusals import REASONS  # noqa: E402
from rag.index import DEFAULT_COLLECTION, CollectionBusy, StorageError, check_name, list_collections  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.web import cut_at_pages, source_page  # noqa: E402

log = logging.getLogger("rag.ui")

EXAMPLES = [
    "Who founded Mistral AI?",
    "Qui a fondé Mistral ?",
    "Which Microsoft cloud will host Mistral Large?",
    "Quel robot conversationnel Mistral a-t-elle dévoilé ?",
]
RETRY = "Retry · Réessayer"
NEW_CHAT = "New chat · Nouveau chat"

# Colours set for both themes (Gradio follows the system's dark setting): the
# highlighted answer must stay readable on either background. One selector a
# rule: when Gradio scopes the page style, it moves .dark out of the first
# selector of a list only.
CSS = """
#rag-header h2 { font-size: 1.3rem; margin: 0 0 .2rem 0; }
#rag-header p { margin: 0; font-size: .9rem; }
.rag-reply mark { background: #fde68a; color: #1c1917; padding: 0 .15em; border-radius: 3px; }
.dark .rag-reply mark { background: #a16207; color: #fefce8; }
.rag-reply small { color: #52525b; }
.dark .rag-reply small { color: #d4d4d8; }
.rag-reply blockquote { margin: .4em 0; }
.rag-reply details > summary { cursor: pointer; }
.rag-reply .rag-page { display: block; margin: .3em 0; border-top: 1px dashed #a1a1aa; font-size: .8rem; color: #52525b; }
.dark .rag-reply .rag-page { color: #d4d4d8; }
.rag-reply a { color: #1d4ed8; }
.dark .rag-reply a { color: #93c5fd; }
.rag-docs ul { margin: .2rem 0; padding-left: 1.2rem; }
.rag-docs small { color: #52525b; }
.dark .rag-docs small { color: #d4d4d8; }
#rag-status .rag-failed { color: #b91c1c; }
.dark #rag-status .rag-failed { color: #fca5a5; }
#rag-upload-note .rag-failed { color: #b91c1c; }
.dark #rag-upload-note .rag-failed { color: #fca5a5; }
#rag-buttons { flex-wrap: nowrap; }
#rag-upload .or { color: #52525b; }
.dark #rag-upload .or { color: #d4d4d8; }
#rag-question textarea::placeholder { color: #52525b; opacity: 1; }
.dark #rag-question textarea::placeholder { color: #d4d4d8; }
#rag-question textarea:focus-visible { outline: 2px solid #1d4ed8 !important; outline-offset: 2px; }
.dark #rag-question textarea:focus-visible { outline-color: #93c5fd !important; }
footer { color: #52525b !important; }
.dark footer { color: #d4d4d8 !important; }
footer a { color: #52525b !important; }
.dark footer a { color: #d4d4d8 !important; }
footer button { color: #52525b !important; }
.dark footer button { color: #d4d4d8 !important; }
#rag-chat .bubble-wrap { padding-top: 34px; }  /* the first message starts below the chat's toolbar */
@media (max-width: 640px) {
  #rag-chat { height: calc(100dvh - 390px) !important; }
  #rag-header h2 { font-size: 1.05rem; }
  #rag-header p { font-size: .8rem; }
  #rag-chat .message-row { margin: 10px 4px 8px !important; max-width: calc(100% - 8px) !important; }
  #rag-chat .scroll-down-button-container { display: none; }  /* it covered the answer's lines */
}
"""

# What Gradio's chat does not do by itself. The send button, an icon, gets a name, and the question box its own.
# Screen readers are given each message's text, where Gradio's aria-label holds its raw HTML. A new answer is
# scrolled to its start, not its end: on a phone a long reply would otherwise
# hide its first line, the answer, above the fold. And the copy buttons copy
# text (the answer, its confidence, where it was read), not the reply's markup.
HEAD = """
<script>
(() => {
  const MESSAGES = "[data-testid='bot'], [data-testid='user']";
  const flat = (node) => node ? node.innerText.replace(/\\s+/g, " ").trim() : "";
  const tidy = () => {
    document.querySelectorAll("#rag-question button[data-testid='submit-button']:not([aria-label])")
      .forEach((button) => button.setAttribute("aria-label", "Ask · Demander"));
    // the box's label wraps the send button too, whose name would otherwise join the box's
    document.querySelectorAll("#rag-question textarea:not([aria-label])")
      .forEach((box) => box.setAttribute("aria-label", "Your question · Votre question"));
    const shown = document.querySelectorAll(MESSAGES);
    let changed = null;
    shown.forEach((message) => {
      const who = message.dataset.testid === "bot" ? "Answer: " : "Question: ";
      const label = who + flat(message);
      if (message.getAttribute("aria-label") === label) return;
      message.setAttribute("aria-label", label);
      changed = message;
    });
    const last = shown[shown.length - 1];
    if (!changed || changed !== last) return;
    const chat = last.closest(".bubble-wrap");
    if (!chat) return;
    const top = last.getBoundingClientRect().top - chat.getBoundingClientRect().top;
    // 40 px above the answer: the chat's toolbar (copy, clear) sits over the top of the chat
    chat.scrollTop += last.dataset.testid === "bot" ? top - 40 : chat.scrollHeight;
  };
  new MutationObserver(tidy).observe(document.documentElement,
    {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["aria-label"]});

  const plain = (message) => {
    const reply = message.querySelector(".rag-reply");
    if (!reply) return flat(message);
    const answer = reply.querySelector(":scope > p");
    const source = reply.querySelector("details[open] > summary");
    return [flat(answer), flat(source)].filter(Boolean).join("\\n");
  };
  // Gradio puts a message's buttons after it, as a sibling in the message list.
  const messageOf = (button) => {
    const buttons = button.closest(".message-buttons");
    for (let node = buttons && buttons.previousElementSibling; node; node = node.previousElementSibling) {
      const inside = node.querySelectorAll(MESSAGES);
      if (inside.length) return inside[inside.length - 1];
    }
    return null;
  };
  const write = async (text) => {
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {  // no clipboard API outside a secure context: a selected text area
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
  };
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest(
      "button[aria-label='Copy message'], button[aria-label='Copy conversation']");
    if (!button || !button.closest("#rag-chat")) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    let text;
    if (button.getAttribute("aria-label") === "Copy message") {
      const message = messageOf(button);
      text = message ? plain(message) : "";
    } else {
      text = [...document.getElementById("rag-chat").querySelectorAll(MESSAGES)]
        .map((m) => (m.dataset.testid === "bot" ? "" : "> ") + plain(m)).join("\\n\\n");
    }
    write(text);
  }, true);
})();
</script>
<script>
// Gradio checks an upload's size and type in the page, and says so in English alone, as an
// error badge left on the drop zone. The chat checks first and says it in both languages, on a
// line of its own; the other files of the same choice or drop are uploaded as usual.
(() => {
  const UPLOAD = /*UPLOAD*/null;
  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (all, key) => values[key] ?? all);
  const why = (file) => {
    const suffix = (file.name.match(/\.[^.]+$/) || [""])[0].toLowerCase();
    if (!suffix) return fill(UPLOAD.no_suffix, {name: file.name});
    if (!UPLOAD.suffixes.includes(suffix)) return fill(UPLOAD.unsupported, {name: file.name, suffix});
    if (file.size > UPLOAD.limit) return fill(UPLOAD.too_large, {name: file.name, size: (file.size / 2 ** 20).toFixed(1)});
    return null;
  };
  const tell = (reasons) => {
    const note = document.querySelector("#rag-upload-note");
    if (!note) return;
    note.replaceChildren(...reasons.map((reason) => {
      const line = document.createElement("p");
      line.className = "rag-failed";
      line.textContent = reason;
      return line;
    }));
  };
  const sort = (files) => {
    const kept = new DataTransfer();
    const reasons = [];
    for (const file of files) {
      const reason = why(file);
      if (reason) reasons.push(reason); else kept.items.add(file);
    }
    tell(reasons);
    return {kept, refused: reasons.length};
  };
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!UPLOAD || !input.matches || !input.matches("#rag-upload input[type=file]") || input.dataset.sorted) return;
    const {kept, refused} = sort(input.files);
    if (!refused) return;
    event.stopImmediatePropagation();
    input.files = kept.files;
    if (kept.files.length) {
      input.dataset.sorted = "1";
      input.dispatchEvent(new Event("change", {bubbles: true}));
      delete input.dataset.sorted;
    } else {
      input.value = "";
    }
  }, true);
  document.addEventListener("drop", (event) => {
    const zone = event.target.closest && event.target.closest("#rag-upload");
    const input = zone && zone.querySelector("input[type=file]");
    if (!UPLOAD || !input || !event.dataTransfer) return;
    const {kept, refused} = sort(event.dataTransfer.files);
    if (!refused) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    if (kept.files.length) {
      input.files = kept.files;
      input.dataset.sorted = "1";
      input.dispatchEvent(new Event("change", {bubbles: true}));
      delete input.dataset.sorted;
    }
  }, true);
})();
</script>
"""


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
    return HEAD.replace("/*UPLOAD*/null", json.dumps(upload, ensure_ascii=False).replace("</", "<\\/"))

# The page's address names the collection picked, so that a link or a reload opens it again.
ADDRESS_JS = """(name) => {
  const address = new URL(window.location.href);
  address.searchParams.set("collection", name);
  window.history.replaceState(null, "", address);
}"""

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
    return ("… " if first else "") + "".join(shown[p.kind](p) for p in pieces) + (" …" if last < len(source.text)
                                                                                   else "")


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


class ChatApp:
    """Loads the models in the background at start-up and answers chat messages
    in the collection each visitor chose (the launch one unless told). Whatever
    is sent, through the page or the API, gets an answer or a clear message in
    the question's language."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline  # the collection a visit starts in; the models every collection shares
        self.pipelines = {pipeline.collection.name: pipeline}
        self.pipelines_lock = threading.Lock()
        self.ready = threading.Event()
        self.error: Exception | None = None

    def load(self) -> None:
        try:
            self.pipeline.warm_up()
        except Exception as error:  # shown to users instead of a stuck "loading"
            log.exception("loading the models failed")
            self.error = error
        finally:
            self.ready.set()

    @property
    def editable(self) -> bool:
        """A chat over collections takes uploads and switches collection; one over given documents
        (--document) does neither."""
        return self.pipeline.given_documents is None

    @property
    def launch_collection(self) -> str:
        return self.pipeline.collection.name

    def pipeline_for(self, collection: str | None) -> Pipeline:
        """The pipeline of ``collection`` (the launch one when empty), sharing the loaded models.
        One that exists on disk is kept for the next visitor; a name only typed makes nothing.
        A ValueError, in both languages, for a name that is not a collection name."""
        if not collection or collection == self.launch_collection:
            return self.pipeline
        if not self.editable:
            raise ValueError(both_languages("documents_only"))
        try:
            name = check_name(collection)
        except ValueError:
            raise ValueError(both_languages("bad_collection")) from None
        with self.pipelines_lock:
            if name in self.pipelines:
                return self.pipelines[name]
            if not self.ready.wait(timeout=120) or self.error is not None:
                raise ValueError(both_languages("loading"))
            pipeline = self.pipeline.for_collection(name)
            if pipeline.collection.exists:
                self.pipelines[name] = pipeline
            return pipeline

    def collections(self) -> list[str]:
        """The collections a visitor can pick: those under the index folder, and the launch one."""
        return sorted({*list_collections(self.pipeline.settings.index_dir), self.launch_collection})

    def refusal(self, question: Any, history: Any) -> str | None:
        """Why this input cannot be answered, in the question's language; None when it can."""
        if not isinstance(question, str):
            return both_languages("not_text")
        words = words_for(detect_language(question))
        if history is not None and not isinstance(history, (list, tuple)):
            return words["bad_history"]
        try:
            clean_question(question, self.pipeline.settings.max_question_chars)
        except ValueError:
            return words["empty"]
        if not self.ready.wait(timeout=120):
            return words["loading"]
        if self.error is not None:
            return words["not_loaded"].format(error=self.error)
        return None

    def ask(self, message: str, history: list[str] | None = None, collection: str | None = None) -> str:
        """The chat reply to ``message`` (HTML), given the user's earlier questions, in ``collection``."""
        refusal = self.refusal(message, history)
        if refusal is not None:
            return escape(refusal)
        try:
            pipeline = self.pipeline_for(collection)
            answer = pipeline.run(message, history)
        except ValueError as error:  # an empty collection or a bad name: said as the reply, not as an error badge
            log.info("question not answered: %s", error)
            return escape(str(error))
        return render(answer, pipeline.page_starts(answer.doc_id) if answer.answered else (),
                      pipeline.collection.name if self.editable else None)

    def ask_json(self, question: str, history: list[str] | None = None, collection: str | None = None) -> dict:
        """The answer as plain data (text, score, offsets, sources), for API clients."""
        refusal = self.refusal(question, history)
        if refusal is not None:
            log.info("ask_json refused: %s", refusal)  # one line: a refusal is not a server fault
            raise gr.Error(refusal, print_exception=False)
        try:
            return self.pipeline_for(collection).run(question, history).to_dict()
        except ValueError as error:  # an empty collection or a bad name
            raise gr.Error(str(error), print_exception=False) from None

    def document_page(self, doc: str = "", start: str = "", end: str = "", collection: str = "") -> HTMLResponse:
        """``/source?collection=NAME&doc=ID&start=S&end=E``: the cited document, the answer highlighted."""
        try:
            document = self.pipeline_for(collection).document(doc)
        except (KeyError, ValueError, OSError) as error:
            log.info("document view refused: %s", error)
            return HTMLResponse(f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Not found</title>"
                                f"<p>{both_languages('no_document')}</p></html>", status_code=404)
        try:
            span = (int(start), int(end))
        except ValueError:
            span = None
        return HTMLResponse(source_page(document, span))

    # Chat events. The chat shows the user's words escaped (never as markup);
    # the raw questions live in a State beside it, for follow-ups.

    def add_question(self, message: str, shown: list[dict], questions: list[str]):
        if not (message or "").strip():
            return "", shown, questions
        return "", [*shown, {"role": "user", "content": escape(message)}], [*questions, message]

    def reply(self, shown: list[dict], questions: list[str], collection: str) -> list[dict]:
        if not shown or shown[-1]["role"] != "user":
            return shown
        return [*shown, {"role": "assistant", "content": self.ask(questions[-1], questions[:-1], collection)}]

    def drop_reply(self, shown: list[dict]) -> list[dict]:
        return shown[:-1] if shown and shown[-1]["role"] == "assistant" else shown

    # The collection picker and the Documents panel.

    def entries(self, pipeline: Pipeline) -> list[dict]:
        if not self.editable:
            return [{"id": d.id, "title": d.title, "pages": list(d.pages)} for d in pipeline.given_documents]
        return pipeline.collection.entries()

    def header(self, entries: list[dict], collection: str) -> str:
        where = f"collection *{escape(collection)}*"
        if len(entries) == 1:
            subject = f"*{escape(entries[0].get('title') or entries[0]['id'])}* ({where})"
        elif entries:
            subject = f"the {len(entries)} documents of {where}"
        else:
            subject = f"{where}, empty for now: add documents under Documents · ajoutez-en sous Documents"
        return ("## Ask the documents · Questions sur les documents\n"
                f"In English or French, about {subject}: answers are the documents' own words, "
                "highlighted in their passage.")

    def document_list(self, entries: list[dict]) -> str:
        if not entries:
            return "<div class='rag-docs'><p>No documents yet · Aucun document pour l'instant</p></div>"
        items = "".join(
            f"<li>{escape(e.get('title') or e['id'])} <small>({escape(e['id'])}"
            + (f", {len(e['pages'])} pages" if e.get("pages") else "") + ")</small></li>"
            for e in entries
        )
        return f"<div class='rag-docs'><ul>{items}</ul></div>"

    def visit(self, saved: Any, request: gr.Request):
        """A page opened, at ``?collection=NAME`` or at the launch collection: its panel as
        the collection is now, read again first if another process changed it (a document
        added with ``rag add`` is listed and answered from), and the conversation this
        browser had there."""
        asked = (request.query_params.get("collection") or "") if request else ""
        return self.open_collection(asked or self.launch_collection, self.launch_collection, saved)

    def open_collection(self, name: str | None, current: str, saved: Any):
        """Another collection picked (or typed, to make a new one): the chat goes on with the
        conversation this browser had there, or starts one. A name that cannot be a
        collection leaves the current one, said on the status line."""
        status = ""
        try:
            pipeline = self.pipeline_for((name or "").strip() or current)
        except ValueError as error:
            pipeline, status = self.pipeline_for(current), failure(str(error))
        name = pipeline.collection.name
        if self.ready.is_set() and self.error is None:
            try:
                pipeline.refresh()
            except Exception:  # the panel still shows what is listed; answers come from the index loaded
                log.exception("reading collection %s again failed", name)
        if not status and self.editable and not pipeline.collection.exists and name != DEFAULT_COLLECTION:
            status = f"<p>{both_languages('new_collection').format(name=escape(name))}</p>"
        picker = gr.Dropdown(choices=self.collections() if name in self.collections()
                             else [*self.collections(), name], value=name)
        return (name, name, picker, gr.Column(visible=name == DEFAULT_COLLECTION and self.editable),
                *restored(saved, name), *self.panel(name, status))

    def panel(self, collection: str, status: str = ""):
        """The panel's contents after a change: header, list, the choices to remove, the status line."""
        entries = self.entries(self.pipeline_for(collection))
        ids = [e["id"] for e in entries]
        return (self.header(entries, collection), self.document_list(entries), gr.Dropdown(choices=ids, value=None),
                gr.Accordion(label=f"Documents ({len(ids)})"), status)

    def add_files(self, files: list[str] | None, collection: str, progress=gr.Progress()):
        """Index uploaded files into the collection, with progress; each file
        that cannot be added is named with the reason. Uploads are deleted
        once read: the collection keeps its own copy of their text."""
        paths = [str(f) for f in files or []]
        try:
            if not paths:
                return (*self.panel(collection), None)

            def report_progress(done: int, total: int, what: str) -> None:
                progress((done, total), desc=f"Indexing · Indexation: {what}", unit="passages")

            try:
                pipeline = self.pipeline_for(collection)
                report = pipeline.add(paths, report_progress, names=[os.path.basename(p) for p in paths],
                                      max_mb=pipeline.settings.max_upload_mb)
            except (ValueError, CollectionBusy, StorageError) as error:
                return (*self.panel(collection, failure(str(error))), None)
            except Exception:  # never a bare error badge: the user hears that nothing changed
                log.exception("adding %d uploaded file(s) failed", len(paths))
                return (*self.panel(collection, failure(both_languages("add_failed"))), None)
        finally:
            for path in paths:  # every upload, read or refused: the collection keeps its own copy of the text
                try:
                    os.unlink(path)
                except OSError:
                    pass
        lines = [f"<p>Added · Ajouté : {escape(n)}</p>" for n in report.added]
        lines += [f"<p>Replaced · Remplacé : {escape(n)}</p>" for n in report.replaced]
        lines += [f"<p>Already there · Déjà présent : {escape(n)}</p>" for n in report.unchanged]
        lines += [failure(why.both()) for why in report.failed.values()]
        return (*self.panel(collection, f"<div class='rag-status'>{''.join(lines)}</div>"), None)

    def remove_document(self, doc_id: str | None, collection: str):
        if not doc_id:
            return self.panel(collection, "<p>Choose a document to remove · Choisissez un document à retirer</p>")
        try:
            self.pipeline_for(collection).remove([doc_id])
        except (ValueError, CollectionBusy, StorageError) as error:
            return self.panel(collection, failure(str(error)))
        return self.panel(collection, f"<p>Removed · Retiré : {escape(doc_id)}</p>")


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


def failure(message: str) -> str:
    return f"<p class='rag-failed'>{escape(message)}</p>"


def accept_every_file(upload: gr.File) -> gr.File:
    """Gradio's file box, less its own check of the file's type: that check
    refuses a file before the chat sees it, in English only and leaving the
    upload in Gradio's folder. The chat checks each file itself, says why in
    both languages, and deletes every upload. (Set on the instance: a
    subclass of a Gradio component would make Gradio write a stub file
    beside this one.)"""

    def preprocess(payload):
        if payload is None:
            return None
        files = payload.root if isinstance(payload, ListFiles) else [payload]
        return [file.path for file in files]

    upload.preprocess = preprocess
    return upload


class ChatBlocks(gr.Blocks):
    """The chat's page, which knows its ChatApp (for the document view that
    :func:`launch` serves beside it). gradio_client fills in an API parameter
    that is left out with its default; a raw REST call (``POST
    /gradio_api/call/ask_json`` with ``{"data": ["question"]}``) does not, and
    Gradio would refuse it with a bare ``{"error": null}``. Here missing API
    inputs take their defaults."""

    def __init__(self, chat: ChatApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.chat = chat

    def validate_inputs(self, block_fn, inputs: list[Any]) -> None:
        missing = block_fn.inputs[len(inputs):]
        if missing and all(isinstance(block, Api) for block in missing):
            inputs.extend(block.value for block in missing)
        super().validate_inputs(block_fn, inputs)


def build_app(pipeline: Pipeline | None = None) -> gr.Blocks:
    chat = ChatApp(pipeline or Pipeline())
    threading.Thread(target=chat.load, name="rag-warm-up", daemon=True).start()
    private = {"api_visibility": "private"}
    with ChatBlocks(chat, title="Ask the documents", analytics_enabled=False) as app:
        entries = chat.entries(chat.pipeline)
        header = gr.Markdown(chat.header(entries, chat.launch_collection), elem_id="rag-header")
        # The chat takes what the viewport leaves for it, so the box and buttons stay on screen on a phone.
        shown = gr.Chatbot(height="calc(100dvh - 330px)", min_height=260, show_label=False, autoscroll=False,
                           placeholder="Ask a question · Posez une question", elem_id="rag-chat",
                           buttons=["copy", "copy_all"])  # no share button: nothing leaves the machine
        questions = gr.State([])
        collection = gr.State(chat.launch_collection)  # this visitor's collection
        # and its conversations, in the browser: a reload, or a link to a collection, goes on with them
        saved = gr.BrowserState({}, storage_key="rag-conversations")
        address = gr.Textbox(chat.launch_collection, visible="hidden", elem_id="rag-address")  # and in the URL
        box = gr.Textbox(label="Your question · Votre question", placeholder="Your question · Votre question",
                         show_label=False,  # the label still names the box for screen readers
                         max_length=chat.pipeline.settings.max_question_chars, submit_btn=True, autofocus=True,
                         elem_id="rag-question")
        with gr.Row(elem_id="rag-buttons"):
            retry = gr.Button(RETRY, size="sm", min_width=0)
            clear = gr.Button(NEW_CHAT, size="sm", min_width=0)
        with gr.Column(visible=chat.editable and chat.launch_collection == DEFAULT_COLLECTION) as examples:
            if chat.editable:
                gr.Examples(EXAMPLES, inputs=box, label="Examples")  # questions about the embedded article
        with gr.Accordion(f"Documents ({len(entries)})", open=False, elem_id="rag-documents") as panel:
            if chat.editable:
                picker = gr.Dropdown(chat.collections(), value=chat.launch_collection, allow_custom_value=True,
                                     label="Collection · type a new name to make one · un nouveau nom en crée une",
                                     elem_id="rag-collection")
            listing = gr.HTML(chat.document_list(entries))
            if chat.editable:
                upload = accept_every_file(gr.File(
                    label="Add files · Ajouter des fichiers (PDF, Word, HTML, Markdown, text)",
                    file_count="multiple", file_types=list(SUPPORTED_SUFFIXES), height=130, elem_id="rag-upload"))
                gr.HTML(elem_id="rag-upload-note")  # the page's own refusals (size, type), before any upload
                status = gr.HTML(elem_id="rag-status")
                with gr.Row():
                    chosen = gr.Dropdown([e["id"] for e in entries], value=None, label="Document to remove",
                                         scale=3, elem_id="rag-chosen")
                    remove = gr.Button("Remove · Retirer", size="sm", scale=1, min_width=0, elem_id="rag-remove")
                panel_outputs = [header, listing, chosen, panel, status]
                # Uploads are read side by side (a slow file holds up no other) and written one at a
                # time by the collection's lock; questions go on meanwhile.
                upload.upload(chat.add_files, [upload, collection], [*panel_outputs, upload], concurrency_limit=4,
                              concurrency_id="upload", **private)
                remove.click(chat.remove_document, [chosen, collection], panel_outputs, concurrency_limit=1,
                             concurrency_id="writer", **private)
                # Each visit opens the collection the link names (?collection=NAME) as it is now, not as
                # it was when the server started; picking another goes on with this browser's
                # conversation there, and the address follows, so that a link or a reload opens it again.
                opened = [collection, address, picker, examples, shown, questions, *panel_outputs]
                app.load(chat.visit, saved, opened, concurrency_limit=1, concurrency_id="writer", **private)
                picker.input(chat.open_collection, [picker, collection, saved], opened, concurrency_limit=1,
                             concurrency_id="writer", **private)
                address.change(None, address, None, js=ADDRESS_JS, **private)
            else:
                app.load(lambda saved_now: restored(saved_now, chat.launch_collection), saved, [shown, questions],
                         queue=False, **private)

        # Two answers at a time suit a 2-core machine; further questions wait in the queue. After
        # each change the browser keeps the conversation (saved by the events that change it: the
        # chat's own change event also fires as a page opens, before the kept conversations are read).
        keep = {"fn": kept, "inputs": [saved, collection, shown, questions], "outputs": saved, "queue": False,
                **private}
        box.submit(chat.add_question, [box, shown, questions], [box, shown, questions], queue=False, **private).then(
            chat.reply, [shown, questions, collection], shown, concurrency_limit=2, concurrency_id="reader", **private
        ).then(**keep)
        retry.click(chat.drop_reply, shown, shown, queue=False, **private).then(
            chat.reply, [shown, questions, collection], shown, concurrency_limit=2, concurrency_id="reader", **private
        ).then(**keep)
        clear.click(lambda: ([], []), None, [shown, questions], queue=False, **private).then(**keep)
        shown.clear(list, None, questions, queue=False, **private).then(**keep)  # the chat's own trash button
        gr.api(chat.ask, api_name="ask", concurrency_limit=2, concurrency_id="reader")
        gr.api(chat.ask_json, api_name="ask_json", concurrency_limit=2, concurrency_id="reader")
    return app


def launch(app: ChatBlocks, settings: Settings, host: str = "127.0.0.1", port: int | None = None,
           share: bool = False, block: bool = True):
    """Serve the chat with its queue, page style, upload and session limits, and
    the cited documents at ``/source``; returns Gradio's (app, url, share url)."""
    app.queue(default_concurrency_limit=2, max_size=64)
    served = app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True,
                        quiet=not block, max_file_size=f"{settings.max_upload_mb}mb",
                        state_session_capacity=settings.max_sessions, css=CSS, head=page_head(settings),
                        run_history=settings.run_history)
    served[0].add_api_route("/source", app.chat.document_page, methods=["GET"], response_class=HTMLResponse,
                            include_in_schema=False)
    if block:
        app.block_thread()
    return served


def main() -> None:
    from rag.cli import settings_from, shared_options

    parser = argparse.ArgumentParser(description="Start the web chat. Its options are the rag command's.",
                                     parents=[shared_options(as_defaults=True)])
    parser.add_argument("--host", default=os.environ.get("RAG_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("RAG_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also open a public share link")
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if args.documents and args.collection:
        parser.error("--document answers from the given files alone; add files to a collection instead")
    try:
        settings = settings_from(args)
        documents = [read_document(path, limits=settings.read_limits()) for path in args.documents or []]
        pipeline = Pipeline(settings, documents or None)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    launch(build_app(pipeline), pipeline.settings, args.host, args.port, args.share)


if __name__ == "__main__":
    main()
