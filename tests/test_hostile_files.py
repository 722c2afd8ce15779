"""Files that try to hurt the reader: each is converted or refused with a
reason in both languages, within a time and memory bound, and the process
that asked never holds the cost. The fuzz test writes its figures to
build/fuzz-converters.json (``pytest tests/test_hostile_files.py -s`` prints them)."""
from __future__ import annotations

import io
import json
import os
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from files import make_docx
from hostile import broken_xml_docx, nested_html, zip_bomb_docx
from rag.documents import SUPPORTED_SUFFIXES, ReadLimits, UnreadableDocument, load_document, read_document

ROOT = Path(__file__).resolve().parent.parent
LIMITS = ReadLimits(max_bytes=10 * 2**20, seconds=20, memory_mb=512)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_deep_html_is_read_in_linear_time(tmp_path):
    shallow, deep = nested_html(tmp_path / "a.html", 2_000), nested_html(tmp_path / "b.html", 200_000)
    began = time.perf_counter()
    assert "douze mètres" in read_document(shallow, limits=LIMITS).text
    small = time.perf_counter() - began
    began = time.perf_counter()
    document = read_document(deep, limits=LIMITS)  # 2.2 MB: took over 10 minutes as a tree
    large = time.perf_counter() - began
    assert document.text == "Le fond du puits est à douze mètres."
    assert large < 5, f"{large:.1f} s for 200,000 nested elements ({small:.2f} s for 2,000)"


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path):
    bomb = zip_bomb_docx(tmp_path / "bombe.docx")
    assert bomb.stat().st_size < 2 * 2**20
    before = rss_mb()
    with pytest.raises(UnreadableDocument) as refused:
        read_document(bomb, limits=LIMITS)
    assert "unpacks to 1024 MB" in refused.value.refusal.en
    assert "se décompresse en 1024 Mo" in refused.value.refusal.fr
    assert rss_mb() - before < 100


def test_a_part_that_compresses_like_a_bomb_is_refused(tmp_path):
    path = tmp_path / "ratio.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (64 * 2**20))  # 64 MB in about 64 KB
    with pytest.raises(UnreadableDocument, match="zip bomb"):
        read_document(path, limits=LIMITS)


def test_broken_xml_in_a_word_file_is_named_with_a_reason(tmp_path):
    good = make_docx(tmp_path / "bon.docx", ["Le conseil se réunit à Brest."])
    broken = broken_xml_docx(tmp_path / "casse.docx", good)
    assert "Brest" in read_document(good, limits=LIMITS).text
    with pytest.raises(UnreadableDocument) as refused:
        read_document(broken, limits=LIMITS)
    reason = refused.value.refusal
    assert reason.en == "casse.docx is not a readable Word (.docx) file: the file is damaged or is not a .docx"
    assert reason.fr.startswith("casse.docx n'est pas un fichier Word (.docx) lisible")
    assert str(tmp_path) not in reason.both()  # a file is named, never the folder it sits in


def test_reading_is_stopped_at_the_time_limit(tmp_path):
    """A reading that would run on is stopped, and costs the caller the limit alone."""
    path = nested_html(tmp_path / "lent.html", 400_000)
    began = time.perf_counter()
    with pytest.raises(UnreadableDocument) as refused:
        read_document(path, limits=ReadLimits(seconds=0.05))
    assert time.perf_counter() - began < 2
    assert "took longer than 0.05 s" in refused.value.refusal.en


def test_reading_is_stopped_at_the_memory_limit(tmp_path):
    """Text that needs more memory than the reading process may have is refused, not swapped in."""
    path = tmp_path / "gros.txt"
    path.write_text("mot " * (40 * 2**20 // 4), encoding="utf-8")  # 40 MB of text, read and tidied in 16 MB
    with pytest.raises(UnreadableDocument, match="memory"):
        read_document(path, limits=ReadLimits(memory_mb=16))


def test_too_much_text_is_refused(tmp_path):
    path = tmp_path / "long.html"
    path.write_text("<p>" + "mot " * 300_000 + "</p>", encoding="utf-8")
    with pytest.raises(UnreadableDocument, match="over 1 MB of text"):
        read_document(path, limits=ReadLimits(max_text_chars=2**20))


# The fuzz test: generated nested HTML, random zips and random bytes under each suffix.

TAGS = ["div", "p", "span", "b", "table", "tr", "td", "script", "style", "title", "head", "body", "svg", "br",
        "noscript", "template", "li", "ul", "!--", "html"]


@st.composite
def nested_pages(draw) -> bytes:
    depth = draw(st.integers(0, 30_000))
    tags = draw(st.lists(st.sampled_from(TAGS), min_size=1, max_size=6))
    opened = "".join(f"<{tags[i % len(tags)]}>" for i in range(depth))
    closed = "".join(f"</{tags[i % len(tags)]}>" for i in reversed(range(draw(st.integers(0, depth)))))
    words = draw(st.text(min_size=0, max_size=200))
    return (opened + words + closed).encode("utf-8", "surrogatepass")


@st.composite
def random_zips(draw) -> bytes:
    names = st.sampled_from(["[Content_Types].xml", "word/document.xml", "_rels/.rels", "word/_rels/document.xml.rels",
                             "docProps/core.xml", "x"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))) as archive:
        for name, data in draw(st.lists(st.tuples(names, st.binary(max_size=2_000)), max_size=5,
                                        unique_by=lambda part: part[0])):
            archive.writestr(name, data)
    raw = buffer.getvalue()
    cut = draw(st.integers(0, len(raw)))
    return raw if draw(st.booleans()) else raw[:cut]


FILES = st.one_of(
    st.tuples(st.sampled_from([".html", ".htm", ".md"]), nested_pages()),
    st.tuples(st.just(".docx"), random_zips()),
    st.tuples(st.sampled_from(SUPPORTED_SUFFIXES), st.binary(max_size=20_000)),
    st.tuples(st.sampled_from([".pdf"]), st.binary(max_size=4_000).map(lambda b: b"%PDF-1.4\n" + b)),
)

FIGURES: dict = {"tried": 0, "converted": 0, "refused": 0, "slowest_s": 0.0, "largest_python_peak_mb": 0.0,
                 "refused_by_reason": {}}


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(FILES)
def test_fuzz_every_file_converts_or_is_refused_with_a_reason(tmp_path_factory, case):
    suffix, data = case
    path = tmp_path_factory.mktemp("fuzz") / f"fichier{suffix}"
    path.write_bytes(data)
    began = time.perf_counter()
    try:
        document = read_document(path, limits=LIMITS)
    except UnreadableDocument as error:
        FIGURES["refused"] += 1
        reasons = FIGURES["refused_by_reason"]
        reasons[error.refusal.key] = reasons.get(error.refusal.key, 0) + 1
        assert error.refusal.en.startswith(path.name) or path.name in error.refusal.en
        assert path.name in error.refusal.fr and str(path.parent) not in error.refusal.both()
        assert error.refusal.key != "reader_failed", error.refusal  # every failure has a reason of its own
    else:
        FIGURES["converted"] += 1
        assert document.text and document.text == document.text.strip()
    seconds = time.perf_counter() - began
    assert seconds < LIMITS.seconds + 5
    FIGURES["tried"] += 1
    FIGURES["slowest_s"] = round(max(FIGURES["slowest_s"], seconds), 3)
    tracemalloc.start()  # the same file read in this process, for its peak of Python allocations
    try:
        load_document(path, max_bytes=LIMITS.max_bytes)
    except UnreadableDocument:
        pass
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    FIGURES["largest_python_peak_mb"] = round(max(FIGURES["largest_python_peak_mb"], peak), 2)


def test_fuzz_figures_are_written():
    """Runs after the fuzz test (file order): its figures, for the README."""
    if not FIGURES["tried"]:
        pytest.skip("the fuzz test did not run in this session")
    assert FIGURES["tried"] == FIGURES["converted"] + FIGURES["refused"]
    out = Path(os.environ.get("RAG_SCREENSHOT_DIR", ROOT / "build"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "fuzz-converters.json").write_text(json.dumps(FIGURES, indent=2))
    print(json.dumps(FIGURES))
