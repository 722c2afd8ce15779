"""The real Gradio app on a free port, driven through gradio_client and a
real Chromium (Playwright)."""
from __future__ import annotations

import os
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client

from rag.reader.squad import normalize_answer

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOT_DIR = Path(os.environ.get("RAG_SCREENSHOT_DIR", ROOT / "build"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(pipeline):
    from ui import build_app

    app = build_app(pipeline)
    app.queue(default_concurrency_limit=2, max_size=64)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    app.close()


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server, verbose=False)


def test_english_and_french_questions(client, pipeline):
    for question in ("Where is the startup located?", "Où la jeune pousse est-elle établie ?"):
        reply = client.predict(question, api_name="/ask")
        expected = pipeline.run(question)
        assert expected.answered
        assert "<mark>" in reply and "<strong>" in reply
        assert expected.text in reply
        assert ("confiance" if expected.language == "fr" else "confidence") in reply


def test_follow_up_uses_the_history(client):
    reply = client.predict("Et qui est le directeur de la technologie ?", ["Qui a fondé Mistral ?"], api_name="/ask")
    assert "Lacroix" in reply
    data = client.predict("Et qui est le directeur de la technologie ?", ["Qui a fondé Mistral ?"],
                          api_name="/ask_json")
    assert data["sources"] and 0 <= data["score"] <= 1
    assert "lacroix" in normalize_answer(data["text"])


def test_abstention_is_said_plainly(client, server, pipeline):
    from dataclasses import replace

    from rag import Pipeline
    from ui import build_app

    strict = Pipeline(replace(pipeline.settings, min_confidence=1.01), pipeline.documents)
    strict.embedder, strict.reader, strict.retriever = pipeline.embedder, pipeline.reader, pipeline.retriever
    app = build_app(strict)
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        strict_client = Client(url, verbose=False)
        assert "does not say" in strict_client.predict("Who founded Mistral?", api_name="/ask")
        assert "ne le dit pas" in strict_client.predict("Qui a fondé Mistral ?", api_name="/ask")
    finally:
        app.close()


def test_html_in_a_document_is_shown_as_text(pipeline, tmp_path):
    from rag.documents import parse_document
    from ui import build_app

    document = parse_document("Le siège de <b>Zorblax</b> est à Lyon. <script>alert(1)</script> "
                              "L'entreprise <i>Zorblax</i> vend des lampes.", "html-note")
    app = build_app(pipeline.for_documents([document], tmp_path / "index"))
    _, url, _ = app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        reply = Client(url, verbose=False).predict("Que vend Zorblax ?", api_name="/ask")
    finally:
        app.close()
    assert "<mark>" in reply  # the passage is shown, with the answer highlighted
    for tag in ("<b>", "<script>", "<i>"):
        assert tag not in reply
    assert "&#60;script&#62;" in reply  # the document's markup is shown as typed


def test_empty_message_gets_a_friendly_reply(client):
    assert "type a question" in client.predict("   ", api_name="/ask")


def test_eight_clients_at_once_match_one_by_one(server, client):
    questions = ["Who founded Mistral AI?", "Qui a fondé Mistral ?", "Where is the startup located?",
                 "Quel robot conversationnel Mistral a-t-elle dévoilé ?", "Which Google model is mentioned?"]
    expected = [client.predict(q, api_name="/ask") for q in questions]

    def session(_: int) -> list[str]:
        own = Client(server, verbose=False)
        return [own.predict(q, api_name="/ask") for q in questions]

    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(session, range(8)))
    for r in replies:
        assert len(r) == len(expected)
        for got, want in zip(r, expected):
            assert got == want


@pytest.mark.browser
def test_browser_chat_shows_the_answer_highlighted(server, pipeline):
    if not Path(CHROMIUM).exists():
        if os.environ.get("RAG_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required but missing: apt-get install -y chromium")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    question = "Where is the startup located?"
    injection = "<img src=x onerror=alert(1)> Who founded Mistral?"
    expected = pipeline.run(question)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(server)
        box = page.get_by_role("textbox").first
        for text, replies in ((question, 1), ("Et qui est le directeur de la technologie ?", 2), (injection, 3)):
            box.fill(text)
            box.press("Enter")
            bot = page.locator("[data-testid='bot']")
            expect(bot).to_have_count(replies, timeout=60_000)
            expect(bot.nth(replies - 1)).to_contain_text("%", timeout=60_000)  # every reply ends with its confidence
        expect(bot.first.locator("mark")).to_have_text(expected.text, timeout=60_000)
        expect(bot.first.locator("strong")).to_have_text(expected.text)
        expect(bot.nth(1)).to_contain_text("Lacroix")
        user = page.locator("[data-testid='user']")
        expect(user.nth(2)).to_contain_text("<img src=x onerror=alert(1)>")
        assert page.locator("img[src='x']").count() == 0
        assert not dialogs
        page.screenshot(path=str(SCREENSHOT_DIR / "chat.png"), full_page=True)

        page.get_by_text("Retry", exact=True).click()  # the last answer is asked again, not added
        expect(bot.nth(2)).to_contain_text("%", timeout=60_000)
        expect(bot).to_have_count(3)
        page.get_by_text("Clear", exact=True).click()
        expect(bot).to_have_count(0)
        expect(page.locator("[data-testid='user']")).to_have_count(0)
        box.fill("Qui a fondé Mistral ?")  # a new conversation starts without the old history
        box.press("Enter")
        expect(bot).to_have_count(1, timeout=60_000)
        browser.close()
