"""Files to documents: plain text, Markdown, HTML, PDF (its text layer, page by
page) and Word (.docx), each read by a library made for the format.

Every converter returns the text that is stored and indexed; answers are
spans of that text. A file that cannot give text (encrypted, scanned, empty,
not in a known encoding) raises :class:`UnreadableDocument` with a message
meant for the user.
"""
from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from pathlib import Path

from rag.documents.model import Document, parse_document, safe_id

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")

# Elements after which text starts a new paragraph when HTML becomes text.
_BLOCKS = ("address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure", "footer",
           "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
           "section", "table", "td", "th", "tr", "ul")
_HIDDEN = ("script", "style", "noscript", "template", "head", "svg")


class UnreadableDocument(ValueError):
    """The file cannot be turned into text; the message says why and what to do."""


def tidy(text: str) -> str:
    """One text convention for every format: ``\\n`` line ends, no control
    characters, no runs of blank lines or spaces, no leading or trailing blanks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def decode(data: bytes, name: str) -> str:
    """UTF-8 (with or without a byte-order mark), else the encoding
    ``charset-normalizer`` finds; refuse what is not text in any encoding."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None or "\x00" in str(best):
        raise UnreadableDocument(f"{name} is not text in an encoding that can be recognised: save it as UTF-8")
    return str(best)


def html_to_text(html: str) -> tuple[str, str | None]:
    """The visible text of a page, a paragraph per block element, and its title."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    for hidden in soup.find_all(_HIDDEN):
        hidden.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(_BLOCKS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    return tidy(soup.get_text()), title or None


def markdown_to_text(markdown: str) -> str:
    """The text a reader sees: Markdown rendered (CommonMark), then its visible text."""
    from markdown_it import MarkdownIt

    return html_to_text(MarkdownIt("commonmark").render(markdown))[0]


def pdf_pages(path: Path) -> list[str]:
    """The text layer of each page."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged files are reported to the user instead
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument(f"{path.name} is an encrypted PDF: save a copy without a password and add that")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableDocument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as error:
        raise UnreadableDocument(f"{path.name} is not a readable PDF ({error})") from None
    except Exception as error:  # pypdf raises many kinds of error on damaged files
        if type(error).__module__.startswith("pypdf") or "decrypt" in str(error).lower():
            raise UnreadableDocument(f"{path.name} is not a readable PDF ({error})") from None
        raise
    if not any(page.strip() for page in pages):
        raise UnreadableDocument(f"{path.name} has no text layer (a scanned PDF?): OCR is not included, "
                                 "so save it as a PDF with text, or as text")
    return pages


def docx_text(path: Path) -> str:
    """The paragraphs and tables of a Word document, in order."""
    from zipfile import BadZipFile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (BadZipFile, PackageNotFoundError, KeyError, ValueError) as error:
        raise UnreadableDocument(f"{path.name} is not a readable Word (.docx) file ({error})") from None
    parts = []
    for block in document.iter_inner_content():
        if isinstance(block, docx.table.Table):
            parts.extend(" | ".join(cell.text for cell in row.cells) for row in block.rows)
        else:
            parts.append(block.text)
    return tidy("\n\n".join(parts))


def read_bytes(path: Path, max_bytes: int | None) -> bytes:
    if path.is_dir():
        raise UnreadableDocument(f"{path} is a folder: give a document file")
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise UnreadableDocument(f"{path.name} is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB "
                                     "limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise UnreadableDocument(f"{path} does not exist") from None
    except OSError as error:
        raise UnreadableDocument(f"{path} cannot be read ({error.strerror or error})") from None


def load_document(path: str | Path, name: str | None = None, max_bytes: int | None = None) -> Document:
    """The document in a file; ``name`` is the file's own name when ``path``
    is a copy (an upload), and gives the document its id and title (the
    file's name: titles that PDF and Word files declare are often a template's)."""
    path = Path(path)
    name = name or path.name
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES and not path.is_dir():
        raise UnreadableDocument(f"{name}: {suffix or 'files without a suffix'} is not supported "
                                 f"(supported: {', '.join(SUPPORTED_SUFFIXES)})")
    data = read_bytes(path, max_bytes)
    if not data.strip():
        raise UnreadableDocument(f"{name} is empty")
    doc_id, title = safe_id(name), Path(name).stem.replace("-", " ").replace("_", " ")
    pages: tuple[int, ...] = ()
    starts: list[int] = []
    if suffix == ".pdf":
        raw = ""
        for page in map(tidy, pdf_pages(path)):
            starts.append(len(raw) + (2 if raw else 0))
            raw = f"{raw}\n\n{page}" if raw else page
    elif suffix == ".docx":
        raw = docx_text(path)
    elif suffix in (".html", ".htm"):
        raw, declared = html_to_text(decode(data, name))
        title = declared or title
    elif suffix in (".md", ".markdown"):
        raw = markdown_to_text(decode(data, name))
    else:
        raw = tidy(decode(data, name))
    try:
        document = parse_document(raw, doc_id=doc_id, title=title)
    except ValueError:
        raise UnreadableDocument(f"{name} has no text") from None
    if suffix == ".pdf":  # page starts, moved as the text was (a leading date line taken out)
        shift = raw.find(document.text)
        pages = tuple(max(0, start - shift) for start in starts)
    return Document(document.id, document.title, document.text, document.date, pages, source=name,
                    file_sha256=hashlib.sha256(data).hexdigest())
