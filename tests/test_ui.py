"""The real Gradio app on a free port, driven through gradio_client and a
real Chromium (Playwright)."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client

from rag.cli import shared_options
from rag.evaluation.squad import normalize_answer
from ui import EXAMPLES, NEW_CHAT, RETRY

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
    app, url = serve(pipeline)
    yield url
    app.close()


def serve(pipeline):
    """The chat app over ``pipeline``, launched as ``python ui.py`` launches it, on a free port."""
    from ui import build_app, launch

    app = build_app(pipeline)
    _, url, _ = launch(app, pipeline.settings, port=free_port(), block=False)
    return app, url


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

    strict = Pipeline(replace(pipeline.settings, min_confidence=1.01), pipeline.documents)
    strict.embedder, strict.reader, strict.retriever = pipeline.embedder, pipeline.reader, pipeline.retriever
    app, url = serve(strict)
    try:
        strict_client = Client(url, verbose=False)
        english = strict_client.predict("Who founded Mistral?", api_name="/ask")
        french = strict_client.predict("Qui a fondé Mistral ?", api_name="/ask")
    finally:
        app.close()
    assert "The document does not say." in english and "Le document ne le dit pas." in french
    for reply in (english, french):  # no percentage that would read as a coin toss
        assert "confiden" not in reply and "confiance" not in reply and "%" not in reply
        assert f"({pipeline.settings.top_k})</summary>" in reply  # the passages read, collapsed


def test_html_in_a_document_is_shown_as_text(pipeline, tmp_path):
    from rag.documents import parse_document

    document = parse_document("Le siège de <b>Zorblax</b> est à Lyon. <script>alert(1)</script> "
                              "L'entreprise <i>Zorblax</i> vend des lampes.", "html-note")
    app, url = serve(pipeline.for_documents([document], tmp_path / "index"))
    try:
        reply = Client(url, verbose=False).predict("Que vend Zorblax ?", api_name="/ask")
    finally:
        app.close()
    assert "<mark>" in reply  # the passage is shown, with the answer highlighted
    for tag in ("<b>", "<script>", "<i>"):
        assert tag not in reply
    assert "&#60;script&#62;" in reply  # the document's markup is shown as typed


def test_english_question_is_told_the_answer_is_quoted_in_french(client):
    english = client.predict("Where is the startup located?", api_name="/ask")
    french = client.predict("Où la jeune pousse est-elle établie ?", api_name="/ask")
    assert "Quoted as written in the French document." in english
    assert "Quoted" not in french and "Cité" not in french


def test_empty_message_gets_a_friendly_reply(client):
    assert "type a question" in client.predict("   ", api_name="/ask")


# Input that cannot be asked, and the message each gets, by language.
BAD_INPUTS = [
    ((" \x00\x01\t ",), "type a question"),  # empty once control characters are dropped
    (("\u0378\u0379",), "type a question"),  # unassigned code points only
    ((42,), "The question must be text. · La question doit être du texte."),
    ((["Who founded Mistral?"],), "La question doit être du texte."),
    (({"question": "Who?"},), "The question must be text."),
    (("Who founded Mistral?", 5), "The history must be a list of earlier questions"),
    (("Qui a fondé Mistral ?", {"a": 1}), "L'historique doit être une liste"),
]


@pytest.mark.parametrize(("inputs", "message"), BAD_INPUTS)
def test_bad_api_input_gets_a_clear_message(client, inputs, message):
    from gradio_client.exceptions import AppError

    reply = client.predict(*inputs, api_name="/ask")
    assert message in html.unescape(reply)
    with pytest.raises(AppError) as error:  # /ask_json answers data, so a refusal is an error with the message
        client.predict(*inputs, api_name="/ask_json")
    assert message in str(error.value)


def rest_call(server: str, endpoint: str, data: list) -> tuple[str, object]:
    """Gradio's raw REST API, as curl would call it: POST the inputs, then read the event stream."""
    post = urllib.request.Request(f"{server}gradio_api/call/{endpoint}", json.dumps({"data": data}).encode(),
                                  {"Content-Type": "application/json"})
    with urllib.request.urlopen(post, timeout=60) as response:
        event_id = json.load(response)["event_id"]
    with urllib.request.urlopen(f"{server}gradio_api/call/{endpoint}/{event_id}", timeout=120) as response:
        lines = response.read().decode().splitlines()
    event = next(line.split(": ", 1)[1] for line in lines if line.startswith("event: ") and "heartbeat" not in line)
    data_line = next(line for line in reversed(lines) if line.startswith("data: "))
    return event, json.loads(data_line.split(": ", 1)[1])


def test_raw_rest_call_with_the_question_alone(server, pipeline):
    event, data = rest_call(server, "ask_json", ["Où la jeune pousse est-elle établie ?"])
    assert event == "complete"
    assert data[0]["text"] == pipeline.run("Où la jeune pousse est-elle établie ?").text
    event, data = rest_call(server, "ask", ["Où la jeune pousse est-elle établie ?"])
    assert event == "complete" and "<mark>" in data[0]
    event, data = rest_call(server, "ask_json", [["not", "a", "question"]])
    assert event == "error" and "La question doit être du texte." in data["error"]


def test_server_is_offline_and_limits_uploads(server, pipeline):
    with urllib.request.urlopen(f"{server}config", timeout=30) as response:
        config = json.load(response)
    assert config["analytics_enabled"] is False
    assert config["max_file_size"] == pipeline.settings.max_upload_mb * 1024 * 1024
    boxes = [c for c in config["components"] if c.get("type") == "textbox" and c["props"]["visible"] is True]
    assert [b["props"]["max_length"] for b in boxes] == [pipeline.settings.max_question_chars]
    body = b"x" * (pipeline.settings.max_upload_mb * 1024 * 1024 + 1)
    boundary = "rag-test-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode() + body + f"\r\n--{boundary}--\r\n".encode()
    upload = urllib.request.Request(f"{server}gradio_api/upload", form,
                                    {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(upload, timeout=60)
    assert refused.value.code == 413


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


REPLIED = re.compile(r"%|does not say|ne le dit pas")  # an answer with its confidence, or an abstention


def require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("RAG_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required but missing: apt-get install -y chromium")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)


@pytest.mark.browser
def test_browser_chat_shows_the_answer_highlighted(server, pipeline):
    from playwright.sync_api import expect, sync_playwright

    require_chromium()
    question = "Where is the startup located?"
    injection = "<img src=x onerror=alert(1)> Who founded Mistral?"
    expected = pipeline.run(question)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900},
                                      permissions=["clipboard-read", "clipboard-write"])
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        script_errors: list[str] = []
        page.on("pageerror", lambda error: script_errors.append(str(error)))  # the page's own scripts run
        page.goto(server)
        box = page.get_by_role("textbox", name="Your question · Votre question")  # named, not "Textbox"
        for text, replies in ((question, 1), ("Et qui est le directeur de la technologie ?", 2), (injection, 3)):
            box.fill(text)
            box.press("Enter")
            bot = page.locator("[data-testid='bot']")
            expect(bot).to_have_count(replies, timeout=60_000)
            expect(bot.nth(replies - 1)).to_contain_text(REPLIED, timeout=60_000)
        expect(bot.first.locator("mark")).to_have_text(expected.text, timeout=60_000)
        expect(bot.first.locator("strong")).to_have_text(expected.text)
        expect(bot.nth(1)).to_contain_text("Lacroix")
        user = page.locator("[data-testid='user']")
        expect(user.nth(2)).to_contain_text("<img src=x onerror=alert(1)>")
        assert page.locator("img[src='x']").count() == 0
        assert not dialogs and not script_errors, (dialogs, script_errors)
        page.screenshot(path=str(SCREENSHOT_DIR / "chat-flow.png"), full_page=True)

        # Copy gives text: the answer with its confidence and where it was read, no markup.
        bot.first.hover()
        page.locator("#rag-chat button[aria-label='Copy message']").nth(1).click()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.splitlines()[0].startswith(expected.text) and "confidence" in copied, copied
        assert expected.title in copied.splitlines()[1] and "<" not in copied.replace("<img src=x", ""), copied
        page.locator("#rag-chat button[aria-label='Copy conversation']").click()
        conversation = page.evaluate("navigator.clipboard.readText()")
        assert conversation.startswith(f"> {question}\n\n{expected.text}") and "<div" not in conversation, conversation

        bot.evaluate_all("(replies) => replies.forEach((reply) => { reply.dataset.shown = 'before'; })")
        page.get_by_text(RETRY, exact=True).click()  # the last answer is asked again, not added
        expect(page.locator("[data-testid='bot']:not([data-shown])")).to_have_count(1, timeout=60_000)  # the new one
        expect(bot.nth(2)).to_contain_text(REPLIED, timeout=60_000)
        expect(bot).to_have_count(3)
        page.get_by_text(NEW_CHAT, exact=True).click()
        expect(bot).to_have_count(0)
        expect(page.locator("[data-testid='user']")).to_have_count(0)
        box.fill("Qui a fondé Mistral ?")  # a new conversation starts without the old history
        box.press("Enter")
        expect(bot).to_have_count(1, timeout=60_000)
        page.reload()  # the new conversation is the one kept, the old one is gone
        expect(bot).to_have_count(1, timeout=60_000)
        expect(page.locator("[data-testid='user']")).to_have_text(["Qui a fondé Mistral ?"])
        browser.close()


VIEWPORTS = {"desktop": {"width": 1100, "height": 900}, "phone": {"width": 390, "height": 844}}

# Each colour the page shows, its background, and their WCAG contrast ratio (text over the
# nearest ancestor with an opaque background).
CONTRASTS = """(selector) => [...document.querySelectorAll(selector)].map((element) => {
  const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
  let back = element;
  while (back && rgb(getComputedStyle(back).backgroundColor)[3] === 0) back = back.parentElement;
  const luminance = ([r, g, b]) => [r, g, b].map((c) => c / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const [a, b] = [luminance(rgb(getComputedStyle(element).color)),
                  luminance(rgb(getComputedStyle(back || document.body).backgroundColor))];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
})"""

# Every text the page shows (and each placeholder) whose contrast with its background is under 4.5:1.
LOW_CONTRAST = """() => {
  const rgb = (value) => value.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => [r, g, b].map((c) => c / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4))
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const ratio = (fore, back) => {
    const [a, b] = [luminance(rgb(fore)), luminance(rgb(back))];
    return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  };
  const backOf = (element) => {
    let back = element;
    while (back && (rgb(getComputedStyle(back).backgroundColor)[3] ?? 1) === 0) back = back.parentElement;
    return getComputedStyle(back || document.body).backgroundColor;
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const element = node.parentElement;
    if (!node.textContent.trim() || !element.checkVisibility({opacityProperty: true, visibilityProperty: true})) continue;
    const value = ratio(getComputedStyle(element).color, backOf(element));
    if (value < 4.5) low.push(`${value.toFixed(2)}: ${node.textContent.trim().slice(0, 40)}`);
  }
  for (const box of document.querySelectorAll("textarea[placeholder], input[placeholder]")) {
    if (!box.placeholder || !box.checkVisibility()) continue;
    const value = ratio(getComputedStyle(box, "::placeholder").color, backOf(box));
    if (value < 4.5) low.push(`${value.toFixed(2)}: placeholder ${box.placeholder}`);
  }
  return low;
}"""


@pytest.mark.browser
def test_browser_question_asked_while_the_page_opens_is_kept(pipeline, monkeypatch):
    """On a slow server, a question is not wiped by the page's conversation being restored:
    the box opens once that is done, with the cursor in it."""
    from playwright.sync_api import expect, sync_playwright

    from rag.web.chat_app import ChatApp

    require_chromium()
    visit, restored = ChatApp.visit, threading.Event()

    def slow_visit(self, saved, request: gr.Request):
        time.sleep(3)  # a busy server
        try:
            return visit(self, saved, request)
        finally:
            restored.set()

    monkeypatch.setattr(ChatApp, "visit", slow_visit)
    app, url = serve(pipeline)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            box = page.get_by_role("textbox", name="Your question · Votre question")
            expect(box).to_be_focused(timeout=30_000)
            box.fill("Qui a fondé Mistral ?")
            box.press("Enter")
            bot = page.locator("[data-testid='bot']")
            expect(bot.first).to_contain_text(REPLIED, timeout=60_000)
            assert restored.wait(30)
            page.wait_for_timeout(1_000)  # what the server sent at its end reaches the page
            expect(bot).to_have_count(1)
            expect(page.locator("[data-testid='user']")).to_have_text(["Qui a fondé Mistral ?"])
            browser.close()
    finally:
        app.close()


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("view", ["desktop", "phone"])
def test_browser_reads_well_in_both_themes_and_on_a_phone(server, pipeline, view, scheme):
    """The answer is readable (contrast >= 4.5:1) and in view, New chat and the
    examples are reachable, bad input gets a message and not an error overlay,
    and screen readers get each message's text rather than its markup."""
    from playwright.sync_api import expect, sync_playwright

    require_chromium()
    questions = ["Qui a fondé Mistral ?", "Which Microsoft cloud will host Mistral Large?"]
    expected = pipeline.run(questions[-1], questions[:-1])  # the chat asks with the conversation's history
    assert expected.answered
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORTS[view], color_scheme=scheme)
        page.goto(server)
        box = page.get_by_role("textbox").first
        bot = page.locator("[data-testid='bot']")
        for count, question in enumerate(questions, start=1):
            box.fill(question)
            box.press("Enter")
            expect(bot).to_have_count(count, timeout=60_000)
            expect(bot.nth(count - 1)).to_contain_text(REPLIED, timeout=60_000)
        expect(page.locator(".dark")).to_have_count(1 if scheme == "dark" else 0)  # Gradio follows the system
        last = bot.last
        expect(last.locator("mark")).to_have_text(expected.text)
        expect(last).to_contain_text("Quoted as written in the French document.")
        page.wait_for_timeout(300)  # the page scrolls the new answer to its start
        chat_box = page.locator(".bubble-wrap").bounding_box()
        toolbar = page.locator("#rag-chat .top-panel").bounding_box()
        for shown in ("strong", "mark"):  # the answer, and its span highlighted in the passage, without scrolling
            answer_box = last.locator(shown).bounding_box()
            assert max(chat_box["y"], toolbar["y"] + toolbar["height"]) <= answer_box["y"] and \
                answer_box["y"] + answer_box["height"] <= chat_box["y"] + chat_box["height"] <= \
                VIEWPORTS[view]["height"], f"the answer's {shown} is out of view or under the chat's toolbar"
        bubble = last.locator("xpath=ancestor::*[contains(@class, 'message-row')][1]").bounding_box()
        assert bubble["width"] >= (0.95 if view == "phone" else 0.8) * chat_box["width"], "the answer is squeezed"
        for selector in (".rag-reply mark", ".rag-reply strong", ".rag-reply .rag-meta", ".rag-reply .rag-note",
                         ".rag-reply summary", ".rag-reply blockquote"):
            assert min(page.evaluate(CONTRASTS, selector)) >= 4.5, f"{selector} is hard to read in {scheme} mode"
        page.screenshot(path=str(SCREENSHOT_DIR / f"chat-{view}-{scheme}.png"))

        clear = page.get_by_text(NEW_CHAT, exact=True)
        clear_box = clear.bounding_box()
        assert clear_box["y"] + clear_box["height"] <= VIEWPORTS[view]["height"], "New chat is below the fold"
        labels = bot.evaluate_all("messages => messages.map((m) => m.getAttribute('aria-label'))")
        assert all(label.startswith("Answer: ") and "<" not in label for label in labels)

        box.fill("\u0378\u0379")  # pasted code points that clean to nothing
        box.press("Enter")
        expect(bot).to_have_count(3, timeout=60_000)
        expect(bot.last).to_contain_text("type a question", timeout=60_000)
        expect(page.get_by_text("Error", exact=True)).to_have_count(0)

        clear.click()
        expect(bot).to_have_count(0)
        example = page.get_by_role("button", name=EXAMPLES[1], exact=True)
        example.scroll_into_view_if_needed()
        example.click()
        expect(box).to_have_value(EXAMPLES[1])

        page.get_by_text("Documents (1)").click()  # the panel of the collection's documents
        expect(page.locator(".rag-docs li")).to_have_count(1)
        for selector in (".rag-docs li", ".rag-docs small"):
            assert min(page.evaluate(CONTRASTS, selector)) >= 4.5, f"{selector} is hard to read in {scheme} mode"
        upload = page.locator("#rag-upload").bounding_box()
        assert upload["x"] >= 0 and upload["x"] + upload["width"] <= VIEWPORTS[view]["width"]

        # Accessibility: every text readable, every control named, the question box labelled and focus visible.
        box.fill("Qui a fondé Mistral ?")
        box.press("Enter")
        expect(bot).to_have_count(1, timeout=60_000)
        assert page.evaluate(LOW_CONTRAST) == [], f"text under 4.5:1 in {scheme} mode on {view}"
        tree = page.locator("body").aria_snapshot()
        assert re.findall(r"- button(?! \")", tree) == [], tree  # each button has an accessible name
        assert 'textbox "Your question · Votre question"' in tree and 'button "Ask · Demander"' in tree, tree
        assert len(re.findall(r'button "Clear"', tree)) <= 1 and tree.count(f'button "{NEW_CHAT}"') == 1, tree
        expect(bot.last.locator(".rag-reply")).to_have_attribute("lang", "fr")
        box.focus()
        ring = box.evaluate("(e) => [getComputedStyle(e).outlineStyle, getComputedStyle(e).outlineWidth]")
        assert ring[0] != "none" and ring[1] != "0px", ring
        browser.close()


@pytest.mark.browser
@pytest.mark.parametrize("scheme, store", [("light", "files"), ("dark", "milvus")])
def test_browser_uploads_a_pdf_and_a_word_file_and_answers_from_them(pipeline, tmp_path, scheme, store):
    """A new collection in the chat: upload a PDF of three pages and a Word
    file at once, ask about each, get the span highlighted with the
    document's name (and page); remove one; a file that cannot be read is named.
    Once in the file store, once in Milvus Lite (where a second process is refused)."""
    from dataclasses import replace

    from playwright.sync_api import expect, sync_playwright

    from files import make_docx, make_pdf
    from rag import Pipeline

    require_chromium()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    pdf = make_pdf(uploads / "rapport-annuel.pdf", [
        "Le rapport annuel de la société Vendrix couvre l'année 2023.",
        "Vendrix a été fondée en 1987 par Odile Marchetti à Grenoble.",
        "Le chiffre d'affaires de Vendrix a atteint 42 millions d'euros.",
    ], title="Vendrix annual report")
    word = make_docx(uploads / "compte-rendu.docx", ["Compte rendu du conseil de Talvane.",
                                                     "La prochaine assemblée de Talvane se tiendra à Brest."])
    scanned = uploads / "scan.pdf"
    scanned.write_bytes(b"%PDF-1.4 not a real PDF")
    stored_in = "files" if store == "files" else f"milvus:{tmp_path / 'passages.db'}"
    mine = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection="mine", store=stored_in))
    mine.embedder, mine.reader = pipeline.embedder, pipeline.reader
    app, url = serve(mine)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORTS["desktop"], color_scheme=scheme)
            page.goto(url)
            expect(page.locator("#rag-header")).to_contain_text("collection mine, empty for now")
            page.get_by_text("Documents (0)").click()
            # Gradio's own checks (size, type) are made by the page first, in both languages, with no error badge.
            huge = uploads / "énorme.txt"
            huge.write_bytes(b"a" * (mine.settings.max_upload_mb * 2**20 + 1))
            sheet = uploads / "budget.xlsx"
            sheet.write_bytes(b"PK\x03\x04")
            page.locator("#rag-upload input[type=file]").set_input_files(
                [str(pdf), str(word), str(scanned), str(huge), str(sheet)])
            note = page.locator("#rag-upload-note")
            expect(note.locator("p")).to_have_count(2)
            expect(note).to_contain_text(f"over the {mine.settings.max_upload_mb} MB limit · énorme.txt fait")
            expect(note).to_contain_text("budget.xlsx: .xlsx is not supported")
            expect(note).to_contain_text("le format .xlsx n'est pas pris en charge")
            status = page.locator("#rag-status")
            expect(status).to_contain_text("rapport-annuel.pdf", timeout=120_000)
            expect(status).to_contain_text("compte-rendu.docx")
            expect(status).to_contain_text("scan.pdf is not a readable PDF")
            expect(page.get_by_text("Documents (2)")).to_be_visible()
            expect(page.locator(".rag-docs")).to_contain_text("rapport-annuel.pdf, 3 pages")
            expect(page.get_by_text("Error", exact=True)).to_have_count(0)
            expect(page.locator(".toast-body")).to_have_count(0)
            for selector in (".rag-docs li", ".rag-docs small", ".rag-status p", "#rag-upload-note p"):
                assert min(page.evaluate(CONTRASTS, selector)) >= 4.5, f"{selector} is hard to read in {scheme} mode"

            box = page.get_by_role("textbox").first
            bot = page.locator("[data-testid='bot']")
            asked = {"Qui a fondé Vendrix ?": ("Vendrix annual report, page 2", "Odile Marchetti", ["page 2", "page 3"]),
                     "Where will Talvane's next assembly be held?": ("compte rendu", "Brest", [])}
            for count, (question, (where, words, marks)) in enumerate(asked.items(), start=1):
                expected = mine.run(question)
                assert words in expected.text
                box.fill(question)
                box.press("Enter")
                expect(bot).to_have_count(count, timeout=60_000)
                expect(bot.last).to_contain_text(REPLIED, timeout=60_000)
                expect(bot.last.locator("mark")).to_have_text(expected.text)
                expect(bot.last.locator("summary").first).to_contain_text(where)
                expect(bot.last.locator(".rag-page")).to_have_text(marks)  # a mark where a page starts
            assert min(page.evaluate(CONTRASTS, ".rag-reply mark")) >= 4.5
            assert min(page.evaluate(CONTRASTS, ".rag-reply .rag-page, .rag-reply a")) >= 4.5

            # The cited PDF opens in a tab of its own, at its page, the answer highlighted and in view.
            with page.context.expect_page() as opened:
                bot.first.get_by_role("link", name="Ouvrir le document à ce passage").click()
            cited = opened.value
            cited.wait_for_load_state()
            answer = mine.run("Qui a fondé Vendrix ?")
            expect(cited.locator("mark#answer")).to_have_text(answer.text)
            expect(cited.locator("mark#answer")).to_be_in_viewport()
            expect(cited.locator(".page")).to_have_text(["Page 1", "Page 2", "Page 3"])
            order = cited.evaluate("""() => [...document.querySelectorAll('.page, mark')].map((e) => e.id)""")
            assert order == ["page-1", "page-2", "answer", "page-3"], order
            assert cited.evaluate("document.documentElement.lang") == "fr"
            assert min(cited.evaluate(CONTRASTS, "h1, .text, mark, .page")) >= 4.5
            cited.close()
            page.screenshot(path=str(SCREENSHOT_DIR / f"documents-{scheme}.png"), full_page=True)

            page.locator("#rag-chosen input").click()
            page.get_by_role("option", name="compte-rendu.docx").click()
            page.locator("#rag-remove").click()
            expect(status).to_contain_text("compte-rendu.docx", timeout=60_000)
            expect(page.get_by_text("Documents (1)")).to_be_visible()
            expect(page.locator(".rag-docs")).not_to_contain_text("compte-rendu.docx")

            # Added from the shell while the chat runs: the next visit lists it and answers from it.
            # Milvus Lite serves the chat's process alone: the shell is told to use a Milvus server.
            note = uploads / "note.md"
            note.write_text("# Note\n\nLe siège de Talvane se trouve à Quimper depuis 2011.\n", encoding="utf-8")
            added = subprocess.run([sys.executable, "-m", "rag", "add", str(note), "--collection", "mine"],
                                   capture_output=True, text=True, timeout=300,
                                   env={**os.environ, "RAG_INDEX_DIR": str(tmp_path / "index"), "RAG_STORE": stored_in})
            if store == "milvus":
                assert added.returncode == 2 and "open in another process" in added.stderr, added.stderr
                mine.add([note])  # in the chat's process instead
            else:
                assert added.returncode == 0, added.stderr
            page.reload()
            page.get_by_text("Documents (2)").click(timeout=60_000)
            expect(page.locator(".rag-docs")).to_contain_text("note.md")
            box = page.get_by_role("textbox").first
            box.fill("Où se trouve le siège de Talvane ?")
            box.press("Enter")
            expect(bot.last.locator("mark")).to_contain_text("Quimper", timeout=60_000)
            browser.close()
    finally:
        app.close()
    assert [e["id"] for e in mine.collection.entries()] == ["rapport-annuel.pdf", "note.md"]
    assert not list((tmp_path / "index" / "mine").rglob("*.pdf"))  # the collection keeps text, not uploads


@pytest.mark.browser
def test_browser_picks_and_makes_collections_and_the_answers_follow(pipeline, tmp_path):
    """Two collections under one index folder: a link opens either, the picker
    switches between them (the chat starting over, the address following), a
    new name makes an empty collection that says so, a bad name changes nothing;
    the API takes the collection too."""
    from dataclasses import replace

    from playwright.sync_api import expect, sync_playwright

    from rag import Pipeline

    notes = {"alpha": "Le siège de Talvane se trouve à Quimper depuis 2011.",
             "beta": "La société Orbilo a été fondée par Ingrid Solberg à Dijon."}
    for name, text in notes.items():
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
        other = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection=name))
        other.embedder, other.reader = pipeline.embedder, pipeline.reader
        assert other.add([tmp_path / f"{name}.txt"]).added == [f"{name}.txt"]
    alpha = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection="alpha"))
    alpha.embedder, alpha.reader = pipeline.embedder, pipeline.reader
    app, url = serve(alpha)
    try:
        client = Client(url, verbose=False)
        assert "Solberg" in client.predict("Qui a fondé Orbilo ?", [], "beta", api_name="/ask_json")["text"]
        assert "Quimper" in client.predict("Où est le siège de Talvane ?", api_name="/ask_json")["text"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORTS["desktop"])
            bot = page.locator("[data-testid='bot']")
            box = page.get_by_role("textbox", name="Your question · Votre question")

            def ask(question: str) -> None:
                count = bot.count()
                box.fill(question)
                box.press("Enter")
                expect(bot).to_have_count(count + 1, timeout=60_000)

            page.goto(f"{url}?collection=beta")  # a link names the collection
            expect(page.locator("#rag-header")).to_contain_text("collection beta", timeout=60_000)
            ask("Qui a fondé Orbilo ?")
            expect(bot.last.locator("mark")).to_contain_text("Ingrid Solberg")
            link = bot.last.get_by_role("link", name="Ouvrir le document à ce passage").get_attribute("href")
            assert "collection=beta" in link and "doc=beta.txt" in link

            page.get_by_text("Documents (1)").click()
            picker = page.locator("#rag-collection input")
            expect(picker).to_have_value("beta")
            picker.click()
            expect(page.get_by_role("option")).to_have_text([re.compile(r"\balpha$"), re.compile(r"\bbeta$")])
            page.get_by_role("option", name="alpha").click()
            expect(page.locator("#rag-header")).to_contain_text("collection alpha", timeout=60_000)
            expect(bot).to_have_count(0)  # a new conversation in the other collection
            page.wait_for_url("**?collection=alpha")
            ask("Qui a fondé Orbilo ?")  # asked in alpha, which does not say
            expect(bot.last).not_to_contain_text("Solberg")
            ask("Où est le siège de Talvane ?")
            expect(bot.last.locator("mark")).to_contain_text("Quimper")

            page.reload()  # the browser kept the conversation, in its collection
            expect(bot).to_have_count(2, timeout=60_000)
            expect(bot.last.locator("mark")).to_contain_text("Quimper")
            expect(page.locator("#rag-header")).to_contain_text("collection alpha")
            page.get_by_text(RETRY, exact=True).click()  # asks the kept question again: the questions came back too
            expect(bot.last.locator("mark")).to_contain_text("Quimper", timeout=60_000)
            expect(bot).to_have_count(2)
            page.get_by_text("Documents (1)").click()
            picker.click()
            page.get_by_role("option", name="beta").click()
            expect(page.locator("#rag-header")).to_contain_text("collection beta", timeout=60_000)
            expect(bot).to_have_count(1)  # beta's own conversation, as it was left
            expect(bot.last.locator("mark")).to_contain_text("Ingrid Solberg")

            picker.fill("gamma")  # a new name makes a new, empty collection
            picker.press("Enter")
            expect(page.locator("#rag-status")).to_contain_text("Nouvelle collection gamma", timeout=60_000)
            page.wait_for_url("**?collection=gamma")
            expect(page.get_by_text("Documents (0)")).to_be_visible()
            ask("Où est le siège de Talvane ?")
            expect(bot.last).to_contain_text("La collection 'gamma' n'a pas encore de document")

            picker.fill("../alpha")
            picker.press("Enter")
            expect(page.locator("#rag-status")).to_contain_text("not a collection name", timeout=60_000)
            assert page.url.endswith("?collection=gamma")
            expect(picker).to_have_value("gamma")
            browser.close()
    finally:
        app.close()
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["alpha", "beta"]  # gamma: only a name so far


def test_a_kept_conversation_is_restored_only_in_its_own_shape():
    from rag.web.conversations import KEPT_COLLECTIONS, KEPT_MESSAGES, kept, restored

    shown = [{"role": "user", "content": [{"type": "text", "text": "Qui ?"}], "metadata": None},
             {"role": "assistant", "content": "<div class='rag-reply'>Lui</div>"}]
    saved = kept({}, "work", shown, ["Qui ?"])
    assert restored(saved, "work") == ([{"role": "user", "content": "Qui ?"},
                                        {"role": "assistant", "content": "<div class='rag-reply'>Lui</div>"}], ["Qui ?"])
    assert restored(saved, "other") == ([], [])
    for bad in (None, 3, "x", {"work": []}, {"work": {"shown": "x", "questions": []}},
                {"work": {"shown": [{"role": "system", "content": "x"}], "questions": []}},
                {"work": {"shown": [{"role": "user", "content": {"a": 1}}], "questions": []}},
                {"work": {"shown": [], "questions": [1]}}, {"work": {"shown": [3], "questions": []}}):
        assert restored(bad, "work") == ([], [])
    assert kept(saved, "work", [], ["Qui ?"])["work"] == {"shown": [], "questions": []}  # the trash button
    many = [{"role": "user", "content": str(i)} for i in range(3 * KEPT_MESSAGES)]
    assert len(kept({}, "work", many, [m["content"] for m in many])["work"]["questions"]) == KEPT_MESSAGES
    for number in range(2 * KEPT_COLLECTIONS):
        saved = kept(saved, f"c{number}", shown, ["Qui ?"])
    assert len(saved) == KEPT_COLLECTIONS and list(saved)[-1] == f"c{2 * KEPT_COLLECTIONS - 1}"


def test_refusals_are_one_log_line_and_run_history_is_off(server, client, capfd):
    from gradio_client.exceptions import AppError

    capfd.readouterr()
    with pytest.raises(AppError):
        client.predict(42, api_name="/ask_json")
    assert "Traceback" not in "".join(capfd.readouterr())
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{server}gradio_api/runs", timeout=30)
    assert missing.value.code == 404


def test_the_cited_document_opens_at_the_answer_and_nothing_else_does(server, client):
    """``/source`` serves a document of the collection by its manifest id, the
    answer marked; any other name is a plain 404, never a file of the server."""
    from urllib.parse import urlencode

    answer = client.predict("Qui a fondé Mistral ?", api_name="/ask_json")
    query = urlencode({"doc": answer["doc_id"], "start": answer["start"], "end": answer["end"]})
    with urllib.request.urlopen(f"{server}source?{query}", timeout=30) as response:
        shown = response.read().decode()
    assert f"<mark id='answer'>{html.escape(answer['text'])}</mark>" in shown
    for doc in ("../../../etc/passwd", "/etc/passwd", "manifest.json", ""):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server}source?{urlencode({'doc': doc})}", timeout=30)
        assert refused.value.code == 404 and b"not in the collection" in refused.value.read()
    with urllib.request.urlopen(f"{server}source?{urlencode({'doc': answer['doc_id'], 'start': 'x'})}",
                                timeout=30) as response:
        assert "<mark" not in response.read().decode()


def gradio_uploads() -> Path:
    import tempfile

    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def resident_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.browser
def test_browser_hostile_uploads_cost_their_file_alone(pipeline, tmp_path):
    """Two visitors upload at once: one a page of 200,000 nested elements, a
    zip bomb dressed as Word, a Word file with broken XML and a spreadsheet;
    the other a small note. Each file is converted or named with a reason in
    both languages, the note is not held up, the server's memory stays put,
    and nothing uploaded stays in Gradio's folder."""
    from dataclasses import replace

    from playwright.sync_api import expect, sync_playwright

    from files import make_docx
    from hostile import broken_xml_docx, nested_html, zip_bomb_docx
    from rag import Pipeline

    require_chromium()
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    deep = nested_html(uploads / "profond.html", 200_000)
    bomb = zip_bomb_docx(uploads / "bombe.docx")
    broken = broken_xml_docx(uploads / "casse.docx", make_docx(tmp_path / "bon.docx", ["Brest."]))
    sheet = uploads / "tableur.xlsx"
    sheet.write_bytes(b"PK\x03\x04 not a workbook")
    note = uploads / "note.txt"
    note.write_text("Le siège de Quorra est à Dijon.", encoding="utf-8")
    mine = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection="mine"))
    mine.embedder, mine.reader = pipeline.embedder, pipeline.reader
    app, url = serve(mine)
    before = resident_mb()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            first, second = browser.new_page(), browser.new_page()
            for page in (first, second):
                page.goto(url)
                page.get_by_text("Documents (0)").click()
            first.locator("#rag-upload input[type=file]").set_input_files([str(deep), str(bomb), str(broken),
                                                                            str(sheet)])
            second.locator("#rag-upload input[type=file]").set_input_files([str(note)])
            expect(second.locator("#rag-status")).to_contain_text("Added · Ajouté : note.txt", timeout=60_000)
            status = first.locator("#rag-status")
            expect(status).to_contain_text("profond.html", timeout=60_000)
            text = status.inner_text()
            browser.close()
    finally:
        app.close()
    assert "Added · Ajouté : profond.html" in text
    assert "bombe.docx unpacks to 1024 MB" in text and "bombe.docx se décompresse en 1024 Mo" in text
    assert "casse.docx is not a readable Word" in text and "casse.docx n'est pas un fichier Word" in text
    # The spreadsheet is refused by the page before it is sent, or by the chat with a reason; either way,
    # it is not kept (a file Gradio itself refused used to stay in its folder, served back on request).
    assert "tableur.xlsx" not in text or ("not supported" in text and "n'est pas pris en charge" in text)
    assert str(gradio_uploads()) not in text and "/tmp" not in text
    assert resident_mb() - before < 100
    left = [p.name for p in gradio_uploads().rglob("*") if p.is_file()]
    for path in (deep, bomb, broken, sheet, note):
        assert path.name not in left
    assert sorted(e["id"] for e in mine.collection.entries()) == ["note.txt", "profond.html"]


def test_an_empty_collection_is_answered_with_the_message(pipeline, tmp_path):
    from dataclasses import replace

    from gradio_client.exceptions import AppError

    from rag import Pipeline

    empty = Pipeline(replace(pipeline.settings, index_dir=tmp_path / "index", collection="vide"))
    empty.embedder, empty.reader = pipeline.embedder, pipeline.reader
    app, url = serve(empty)
    try:
        client = Client(url, verbose=False)
        french = client.predict("Qui a fondé Vendrix ?", api_name="/ask")
        english = client.predict("Who founded Vendrix?", api_name="/ask")
        with pytest.raises(AppError) as error:
            client.predict("Who founded Vendrix?", api_name="/ask_json")
    finally:
        app.close()
    assert "La collection 'vide' n'a pas encore de document" in html.unescape(french)
    assert "Collection 'vide' has no documents yet" in html.unescape(english)
    assert "has no documents yet" in str(error.value)


def test_the_chat_takes_the_rag_commands_options():
    """One set of flags everywhere: each option of ``rag ask`` is also ``python ui.py``'s."""
    result = subprocess.run([sys.executable, "ui.py", "--help"], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    flags = {flag for action in shared_options(as_defaults=True)._actions for flag in action.option_strings}
    assert flags - {"-h", "--help"} and all(flag in result.stdout for flag in flags)
