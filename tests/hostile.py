"""Hostile and broken files, written by the tests: deep HTML, a zip bomb
dressed as a Word file, a Word file with broken XML."""
from __future__ import annotations

import zipfile
from pathlib import Path


def nested_html(path: Path, depth: int, text: str = "Le fond du puits est à douze mètres.") -> Path:
    path.write_text("<div>" * depth + text + "</div>" * depth, encoding="utf-8")
    return path


def zip_bomb_docx(path: Path, unpacked_mb: int = 1024) -> Path:
    """A .docx of about 1 MB whose document.xml unpacks to ``unpacked_mb`` MB of zeros."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            block = b"\0" * 2**20
            for _ in range(unpacked_mb):
                part.write(block)
    return path


def broken_xml_docx(path: Path, good: Path) -> Path:
    """A valid zip of a real Word file, its document.xml cut in half."""
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in source.infolist():
            data = source.read(member.filename)
            if member.filename == "word/document.xml":
                data = data[: len(data) // 2]
            archive.writestr(member.filename, data)
    return path
