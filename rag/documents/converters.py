"""Files to documents: plain text, Markdown, HTML, PDF (its text layer, page by
page) and Word (.docx), each read by a library made for the format.

Every converter returns the text that is stored and indexed; answers are
spans of that text. A file that cannot give text (encrypted, scanned, empty,
not in a known encoding, too large once unpacked) raises
:class:`UnreadableDocument` with a reason meant for the user. Nothing here
grows faster than the file: HTML is read as a stream of tags, never as a tree
whose depth an attacker chooses, and a zip container is measured before it
is opened. Time and memory are bounded around these functions, by
:mod:`rag.documents.isolation`.
"""
from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from pathlib import Path

from rag.documents.model import Document, parse_document, safe_id
from rag.documents.refusals import UnreadableDocument, unreadable

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")

# Elements after which text starts a new paragraph when HTML becomes text.
_BLOCKS = frozenset(("address", "article", "aside", "blockquote", "dd", "div", "dl", "dt", "figcaption", "figure",
                     "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol",
                     "p", "pre", "section", "table", "td", "th", "tr", "ul"))
_HIDDEN = frozenset(("script", "style", "noscript", "template", "head", "svg"))

# A .docx is a zip: what it may unpack to, and how well a part may compress
# (Word's XML compresses 5 to 30 times; a zip bomb, thousands of times).
MAX_UNPACKED_BYTES = 256 * 2**20
MAX_COMPRESSION_RATIO = 200
DEFAULT_MAX_TEXT_CHARS = 50 * 2**20


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
        raise unreadable("encoding", name=name)
    return str(best)


class _VisibleText:
    """The visible text of a page as libxml2's HTML parser streams its tags
    by (a parser target: no tree is built): a paragraph break at each block
    element, a line break at ``<br>``, nothing inside hidden elements, the
    ``<title>`` aside. Its cost is linear in the file, however deeply the
    elements nest."""

    def __init__(self, max_chars: int) -> None:
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self.hidden = 0
        self.in_title = False
        self.size, self.max_chars = 0, max_chars

    def start(self, tag: str, attributes) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "title":
            self.in_title = True
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def end(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag == "title":
            self.in_title = False
        elif tag in _BLOCKS:
            self.parts.append("\n\n")

    def data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)
        elif not self.hidden:
            self.size += len(data)
            if self.size > self.max_chars:
                raise _TooMuchText
            self.parts.append(data)

    def close(self) -> None:  # the target interface's end of the stream; the text is in ``parts``
        pass


class _TooMuchText(Exception):
    pass


def html_to_text(html: str, name: str = "page.html",
                 max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> tuple[str, str | None]:
    """The visible text of a page, a paragraph per block element, and its title."""
    from lxml import etree

    text = _VisibleText(max_chars)
    parser = etree.HTMLParser(target=text, recover=True, no_network=True, remove_comments=True)
    try:
        parser.feed(html)
        parser.close()
    except _TooMuchText:
        raise unreadable("text_too_large", name=name, limit=max_chars / 2**20) from None
    except etree.LxmlError:  # nothing a recovering parser can make text of
        raise unreadable("no_text", name=name) from None
    title = " ".join("".join(text.title_parts).split())
    return tidy("".join(text.parts)), title or None


def markdown_to_text(markdown: str, name: str = "notes.md", max_chars: int = DEFAULT_MAX_TEXT_CHARS) -> str:
    """The text a reader sees: Markdown rendered (CommonMark), then its visible text."""
    from markdown_it import MarkdownIt

    return html_to_text(MarkdownIt("commonmark").render(markdown), name, max_chars)[0]


# Titles that tools and templates write in place of a real one.
_PLACEHOLDER_TITLE = re.compile(
    r"\A(untitled|sans titre|document\s*\d*|presentation\s*\d*|titre|title|microsoft \w+ - .*|.*\.\w{2,4})\Z",
    re.IGNORECASE)


def declared_title(value: object) -> str | None:
    """The title a PDF declares in its metadata, unless it is a placeholder
    ("untitled", "Microsoft Word - report.docx", a file name)."""
    if not isinstance(value, str):
        return None
    title = " ".join(value.split())[:200]
    return title if title and not _PLACEHOLDER_TITLE.match(title) else None


def pdf_pages(path: Path, name: str) -> tuple[list[str], str | None]:
    """The text layer of each page, and the title the file declares (see :func:`declared_title`)."""
    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # damaged files are reported to the user instead
    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):
            raise unreadable("encrypted_pdf", name=name)
        pages = [page.extract_text() or "" for page in reader.pages]
    except (UnreadableDocument, MemoryError):
        raise
    except Exception as error:  # pypdf raises many kinds of error on damaged files
        if "decrypt" in str(error).lower() or "crypt" in type(error).__name__.lower():
            raise unreadable("encrypted_pdf", name=name) from None
        log.info("%s: pypdf could not read it (%s: %s)", name, type(error).__name__, error)
        raise unreadable("bad_pdf", name=name) from None
    if not any(page.strip() for page in pages):
        raise unreadable("scanned_pdf", name=name)
    try:  # damaged metadata costs the title only, not the text
        title = declared_title(reader.metadata.title) if reader.metadata else None
    except Exception:
        title = None
    return pages, title


def check_zip(path: Path, name: str, bad: str) -> None:
    """Refuse a zip container before reading it when it would unpack to too
    much, or compresses like a zip bomb (sizes as its directory declares them,
    which the reading then holds it to)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise unreadable(bad, name=name) from None
    total = sum(member.file_size for member in members)
    if total > MAX_UNPACKED_BYTES:
        raise unreadable("unpacked_too_large", name=name, size=total / 2**20, limit=MAX_UNPACKED_BYTES / 2**20)
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > 2**20 and ratio > MAX_COMPRESSION_RATIO:
            raise unreadable("compression_ratio", name=name, ratio=ratio, limit=MAX_COMPRESSION_RATIO)


def docx_text(path: Path, name: str) -> str:
    """The paragraphs and tables of a Word document, in order."""
    import docx

    check_zip(path, name, "bad_docx")
    try:
        document = docx.Document(str(path))
        parts = []
        for block in document.iter_inner_content():
            if isinstance(block, docx.table.Table):
                parts.extend(" | ".join(cell.text for cell in row.cells) for row in block.rows)
            else:
                parts.append(block.text)
    except MemoryError:
        raise
    except Exception as error:  # a broken package, broken XML (lxml), a part missing: all the same to a user
        log.info("%s: python-docx could not read it (%s: %s)", name, type(error).__name__, error)
        raise unreadable("bad_docx", name=name) from None
    return tidy("\n\n".join(parts))


def read_bytes(path: Path, name: str, max_bytes: int | None) -> bytes:
    if path.is_dir():
        raise unreadable("folder", name=name)
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise unreadable("too_large", name=name, size=size / 2**20, limit=max_bytes / 2**20)
        return path.read_bytes()
    except FileNotFoundError:
        raise unreadable("missing", name=name) from None
    except OSError as error:
        raise unreadable("unreadable_file", name=name, why=error.strerror or type(error).__name__) from None


def load_document(path: str | Path, name: str | None = None, max_bytes: int | None = None,
                  max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> Document:
    """The document in a file; ``name`` is the file's own name when ``path``
    is a copy (an upload), and gives the document its id and title (the
    file's name, or the title a PDF declares when it is not a placeholder;
    Word's declared titles are left aside, being mostly a template's).
    In this process and unbounded in time: files from users go through
    :func:`rag.documents.isolation.read_document`."""
    path = Path(path)
    name = name or path.name
    suffix = Path(name).suffix.lower()
    supported = ", ".join(SUPPORTED_SUFFIXES)
    if suffix not in SUPPORTED_SUFFIXES and not path.is_dir():
        raise unreadable("unsupported" if suffix else "no_suffix", name=name, suffix=suffix, supported=supported)
    data = read_bytes(path, name, max_bytes)
    if not data.strip():
        raise unreadable("empty", name=name)
    doc_id, title = safe_id(name), Path(name).stem.replace("-", " ").replace("_", " ")
    pages: tuple[int, ...] = ()
    starts: list[int] = []
    if suffix == ".pdf":
        raw, (pages_text, declared) = "", pdf_pages(path, name)
        title = declared or title
        for page in map(tidy, pages_text):
            starts.append(len(raw) + (2 if raw else 0))
            raw = f"{raw}\n\n{page}" if raw else page
    elif suffix == ".docx":
        raw = docx_text(path, name)
    elif suffix in (".html", ".htm"):
        raw, declared = html_to_text(decode(data, name), name, max_text_chars)
        title = declared or title
    elif suffix in (".md", ".markdown"):
        raw = markdown_to_text(decode(data, name), name, max_text_chars)
    else:
        raw = tidy(decode(data, name))
    if len(raw) > max_text_chars:
        raise unreadable("text_too_large", name=name, limit=max_text_chars / 2**20)
    try:
        document = parse_document(raw, doc_id=doc_id, title=title)
    except ValueError:
        raise unreadable("no_text", name=name) from None
    if suffix == ".pdf":  # page starts, moved as the text was (a leading date line taken out)
        shift = raw.find(document.text)
        pages = tuple(max(0, start - shift) for start in starts)
    return Document(document.id, document.title, document.text, document.date, pages, source=name,
                    file_sha256=hashlib.sha256(data).hexdigest())
