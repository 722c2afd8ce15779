"""The web chat: ``python ui.py`` (options: ``--host``, ``--port``, ``--share``).

Every answer shows the exact words of the document in bold, the confidence,
and the passage it came from with the answer highlighted in place. The chat
function is also an API endpoint, ``/ask``, and ``/ask_json`` returns the
answer as data and takes the conversation's earlier questions::

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

import gradio as gr

from rag.answer import Answer, Pipeline
from rag.documents import load_document

log = logging.getLogger("rag.ui")

EXAMPLES = [
    "Who founded Mistral AI?",
    "Qui a fondé Mistral ?",
    "Which Microsoft cloud will host Mistral Large?",
    "Quel robot conversationnel Mistral a-t-elle dévoilé ?",
]
MESSAGES = {
    "en": {
        "no_answer": "The document does not say.",
        "confidence": "confidence",
        "source": "Source passage",
        "empty": "Please type a question about the document.",
        "loading": "The models are still loading; please try again in a few seconds.",
        "read": "Passages read",
    },
    "fr": {
        "no_answer": "Le document ne le dit pas.",
        "confidence": "confiance",
        "source": "Passage source",
        "empty": "Veuillez poser une question sur le document.",
        "loading": "Les modèles se chargent encore ; réessayez dans quelques secondes.",
        "read": "Passages lus",
    },
}


_MARKUP = {ch: f"&#{ord(ch)};" for ch in "\\`*_{}[]()#+-!|~<>&\"'$"} | {"\n": "<br>"}


def escape(text: str) -> str:
    """Turn every HTML and Markdown special character into an entity, so
    document or user text is shown exactly as typed and never as markup."""
    return "".join(_MARKUP.get(ch, ch) for ch in text)


def highlighted_passage(answer: Answer) -> str:
    source = answer.sources[answer.source_index]
    start, end = answer.start - source.start, answer.end - source.start
    return f"{escape(source.text[:start])}<mark>{escape(source.text[start:end])}</mark>{escape(source.text[end:])}"


def render(answer: Answer) -> str:
    """One chat reply: the answer (or a plain "does not say"), confidence and source."""
    words = MESSAGES[answer.language]
    warnings = "".join(f"<p><em>{escape(w)}</em></p>" for w in answer.warnings)
    if not answer.answered:
        return f"{warnings}{words['no_answer']} <small>({words['confidence']} {answer.score:.0%})</small>"
    return (
        f"{warnings}<strong>{escape(answer.text)}</strong> <small>({words['confidence']} {answer.score:.0%})</small>"
        f"<details open><summary>{words['source']}</summary>"
        f"<blockquote class='rag-source'>{highlighted_passage(answer)}</blockquote></details>"
    )


class ChatApp:
    """Loads the pipeline in the background at start-up and answers chat messages."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
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

    def ask(self, message: str, history: list[str] | None = None) -> str:
        """The chat reply to ``message`` (HTML), given the user's earlier questions."""
        from rag.answer.language import detect_language

        words = MESSAGES[detect_language(message or "")]
        if not (message or "").strip():
            return words["empty"]
        if not self.ready.wait(timeout=120):
            return words["loading"]
        if self.error is not None:
            return escape(f"The models could not be loaded: {self.error}")
        return render(self.pipeline.run(message, history))

    def ask_json(self, question: str, history: list[str] | None = None) -> dict:
        """The answer as plain data (text, score, offsets, sources), for API clients."""
        if not self.ready.wait(timeout=120) or self.error is not None:
            raise gr.Error("The models are not loaded.")
        try:
            return self.pipeline.run(question, history).to_dict()
        except ValueError as error:
            raise gr.Error(str(error)) from None

    # Chat events. The chat shows the user's words escaped (never as markup);
    # the raw questions live in a State beside it, for follow-ups.

    def add_question(self, message: str, shown: list[dict], questions: list[str]):
        if not (message or "").strip():
            return "", shown, questions
        return "", [*shown, {"role": "user", "content": escape(message)}], [*questions, message]

    def reply(self, shown: list[dict], questions: list[str]) -> list[dict]:
        if not shown or shown[-1]["role"] != "user":
            return shown
        return [*shown, {"role": "assistant", "content": self.ask(questions[-1], questions[:-1])}]

    def drop_reply(self, shown: list[dict]) -> list[dict]:
        return shown[:-1] if shown and shown[-1]["role"] == "assistant" else shown


def build_app(pipeline: Pipeline | None = None) -> gr.Blocks:
    chat = ChatApp(pipeline or Pipeline())
    threading.Thread(target=chat.load, name="rag-warm-up", daemon=True).start()
    document = chat.pipeline.documents[0]
    private = {"api_visibility": "private"}
    with gr.Blocks(title="Ask the document") as app:
        gr.Markdown(
            "## Questions sur le document · Ask the document\n"
            f"Ask in English or French about *{escape(document.title)}*"
            + (f" ({escape(document.date)})" if document.date else "")
            + ". Answers are the document's own words, highlighted in their passage."
        )
        shown = gr.Chatbot(height=520, placeholder="Ask a question · Posez une question", label="Chat")
        questions = gr.State([])
        box = gr.Textbox(placeholder="Who founded Mistral? · Qui a fondé Mistral ?", show_label=False,
                         max_length=2000, submit_btn=True, autofocus=True)
        with gr.Row():
            retry = gr.Button("Retry", size="sm")
            clear = gr.Button("Clear", size="sm")
        gr.Examples(EXAMPLES, inputs=box, label="Examples")

        # Two answers at a time suit a 2-core machine; further questions wait in the queue.
        box.submit(chat.add_question, [box, shown, questions], [box, shown, questions], queue=False, **private).then(
            chat.reply, [shown, questions], shown, concurrency_limit=2, concurrency_id="reader", **private
        )
        retry.click(chat.drop_reply, shown, shown, queue=False, **private).then(
            chat.reply, [shown, questions], shown, concurrency_limit=2, concurrency_id="reader", **private
        )
        clear.click(lambda: ([], []), None, [shown, questions], queue=False, **private)
        shown.clear(list, None, questions, queue=False, **private)  # the chat's own trash button
        gr.api(chat.ask, api_name="ask", concurrency_limit=2, concurrency_id="reader")
        gr.api(chat.ask_json, api_name="ask_json", concurrency_limit=2, concurrency_id="reader")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Start the web chat.")
    parser.add_argument("--host", default=os.environ.get("RAG_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("RAG_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="also open a public share link")
    parser.add_argument("--document", dest="documents", action="append", default=[],
                        help="a UTF-8 text document to answer from (repeatable; default: the embedded article)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        pipeline = Pipeline(documents=[load_document(path) for path in args.documents] or None)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    app = build_app(pipeline)
    app.queue(default_concurrency_limit=2, max_size=64)
    app.launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
