"""The chat's server side: answers questions in the collection each visitor
chose, lists and changes that collection's documents, and serves the cited
documents. Gradio's events call these methods (``ui.build_app`` wires them)."""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

import gradio as gr
from fastapi.responses import HTMLResponse

from rag.answer import Pipeline
from rag.answer.language import detect_language
from rag.answer.pipeline import clean_question
from rag.answer.wording import both_languages, words_for
from rag.index import DEFAULT_COLLECTION, CollectionBusy, StorageError, StoreUnavailable, check_name, list_collections
from rag.web.conversations import restored
from rag.web.reply import escape, failure, render
from rag.web.source_view import source_page

log = logging.getLogger("rag.ui")


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
        choices = self.collections()
        picker = gr.Dropdown(choices=choices if name in choices else [*choices, name], value=name)
        return (name, name, picker, gr.Column(visible=name == DEFAULT_COLLECTION and self.editable),
                *restored(saved, name), *self.panel(pipeline, status))

    def panel(self, pipeline: Pipeline, status: str = ""):
        """The panel's contents after a change: header, list, the choices to remove, the status line."""
        entries = self.entries(pipeline)
        ids = [e["id"] for e in entries]
        return (self.header(entries, pipeline.collection.name), self.document_list(entries),
                gr.Dropdown(choices=ids, value=None), gr.Accordion(label=f"Documents ({len(ids)})"), status)

    def add_files(self, files: list[str] | None, collection: str, progress=gr.Progress()):
        """Index uploaded files into the collection, with progress; each file
        that cannot be added is named with the reason. Uploads are deleted
        once read: the collection keeps its own copy of their text."""
        paths = [str(f) for f in files or []]
        try:
            pipeline = self.pipeline_for(collection)
            if not paths:
                return (*self.panel(pipeline), None)

            def report_progress(done: int, total: int, what: str) -> None:
                progress((done, total), desc=f"Indexing · Indexation: {what}", unit="passages")

            try:
                report = pipeline.add(paths, report_progress, names=[os.path.basename(p) for p in paths],
                                      max_mb=pipeline.settings.max_upload_mb)
            except (ValueError, CollectionBusy, StorageError, StoreUnavailable) as error:
                return (*self.panel(pipeline, failure(str(error))), None)
            except Exception:  # never a bare error badge: the user hears that nothing changed
                log.exception("adding %d uploaded file(s) failed", len(paths))
                return (*self.panel(pipeline, failure(both_languages("add_failed"))), None)
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
        return (*self.panel(pipeline, f"<div class='rag-status'>{''.join(lines)}</div>"), None)

    def remove_document(self, doc_id: str | None, collection: str):
        pipeline = self.pipeline_for(collection)
        if not doc_id:
            return self.panel(pipeline, "<p>Choose a document to remove · Choisissez un document à retirer</p>")
        try:
            pipeline.remove([doc_id])
        except (ValueError, CollectionBusy, StorageError, StoreUnavailable) as error:
            return self.panel(pipeline, failure(str(error)))
        return self.panel(pipeline, f"<p>Removed · Retiré : {escape(doc_id)}</p>")
