"""The web chat: ``python ui.py`` (the ``rag`` command's setting flags, and
``--host``, ``--port``, ``--share``); the page is built here from the parts in
``rag/web/``.

Every answer shows the exact words of the document in bold, the confidence,
and the passage around it with the answer highlighted in place, named by its
document (and page), linked to the document opened at the answer; the other
passages read are listed, collapsed, under it. The Documents panel picks or
makes a collection (``?collection=NAME`` opens one), lists its documents,
takes uploads (several files at once, with progress) and removes documents.
The browser keeps each collection's conversation across reloads. The chat
function is also an API endpoint, ``/ask``, and ``/ask_json`` returns the
answer as data and takes the conversation's earlier questions and the
collection::

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")
    client.predict("Who founded Mistral?", api_name="/ask")
    client.predict("And who is the chief scientist?", ["Who founded Mistral?"], api_name="/ask_json")
"""
from __future__ import annotations

import argparse
import logging
import os
import threading
from typing import Any

# The chat runs offline: Gradio reports nothing to its servers unless the user asks for it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
from fastapi.responses import HTMLResponse  # noqa: E402
from gradio.components.api_component import Api  # noqa: E402
from gradio.data_classes import ListFiles  # noqa: E402

from rag.answer import Pipeline  # noqa: E402
from rag.documents import SUPPORTED_SUFFIXES, read_document  # noqa: E402
from rag.index import DEFAULT_COLLECTION  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.web.assets import ADDRESS_JS, FOCUS_QUESTION_JS, page_head, page_style  # noqa: E402
from rag.web.chat_app import ChatApp  # noqa: E402
from rag.web.conversations import kept, restored  # noqa: E402

log = logging.getLogger("rag.ui")

EXAMPLES = [
    "Who founded Mistral AI?",
    "Qui a fondé Mistral ?",
    "Which Microsoft cloud will host Mistral Large?",
    "Quel robot conversationnel Mistral a-t-elle dévoilé ?",
]
RETRY = "Retry · Réessayer"
NEW_CHAT = "New chat · Nouveau chat"


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
        # Closed until the page has restored this browser's conversation, which would wipe a question
        # asked meanwhile (below).
        box = gr.Textbox(label="Your question · Votre question", placeholder="Your question · Votre question",
                         show_label=False,  # the label still names the box for screen readers
                         max_length=chat.pipeline.settings.max_question_chars, submit_btn=True,
                         interactive=False, elem_id="rag-question")
        with gr.Row(elem_id="rag-buttons"):
            retry = gr.Button(RETRY, size="sm", min_width=0)
            clear = gr.Button(NEW_CHAT, size="sm", min_width=0)
        with gr.Column(visible=chat.editable and chat.launch_collection == DEFAULT_COLLECTION) as examples:
            if chat.editable:
                picked = gr.Examples(EXAMPLES, inputs=box, label="Examples")  # questions about the embedded article
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
                restoring = app.load(chat.visit, saved, opened, concurrency_limit=1, concurrency_id="writer",
                                     **private)
                address.change(None, address, None, js=ADDRESS_JS, **private)
            else:
                restoring = app.load(lambda saved_now: restored(saved_now, chat.launch_collection), saved,
                                     [shown, questions], queue=False, **private)
        open_box = {"fn": lambda: gr.Textbox(interactive=True), "outputs": box, "queue": False, **private}
        restoring.then(**open_box).then(None, js=FOCUS_QUESTION_JS, **private)
        if chat.editable:  # an example is written with the box's first settings, closed
            picked.load_input_event.then(**open_box)

        # Two answers at a time suit a 2-core machine; further questions wait in the queue. After
        # each change the browser keeps the conversation (saved by the events that change it: the
        # chat's own change event also fires as a page opens, before the kept conversations are read).
        keep = {"fn": kept, "inputs": [saved, collection, shown, questions], "outputs": saved, "queue": False,
                **private}
        answering = {"fn": chat.reply, "inputs": [shown, questions, collection], "outputs": shown,
                     "concurrency_limit": 2, "concurrency_id": "reader", **private}
        asked = box.submit(chat.add_question, [box, shown, questions], [box, shown, questions], queue=False,
                           **private).then(**answering)
        asked.then(**keep)
        asked_again = retry.click(chat.drop_reply, shown, shown, queue=False, **private).then(**answering)
        asked_again.then(**keep)
        # A new conversation, or another collection, drops an answer still on its way: it belongs to the old one.
        in_flight = [asked, asked_again]
        clear.click(lambda: ([], []), None, [shown, questions], queue=False, cancels=in_flight, **private).then(**keep)
        shown.clear(list, None, questions, queue=False, cancels=in_flight, **private).then(**keep)  # the trash button
        if chat.editable:
            picker.input(chat.open_collection, [picker, collection, saved], opened, concurrency_limit=1,
                         concurrency_id="writer", cancels=in_flight, **private)
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
                        state_session_capacity=settings.max_sessions, css=page_style(), head=page_head(settings),
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
