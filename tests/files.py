"""Real PDF and Word files, written by the tests (reportlab, python-docx)."""
from __future__ import annotations

from pathlib import Path


def make_pdf(path: Path, pages: list[str], title: str | None = None) -> Path:
    """A PDF of these pages; without ``title`` its metadata says "untitled", as ReportLab writes."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path))
    if title:
        pdf.setTitle(title)
    for text in pages:
        pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    return path


def make_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table):
            for cell, value in zip(row.cells, values):
                cell.text = value
    document.save(str(path))
    return path


def write_long_text(path: Path, paragraphs: int) -> Path:
    """A long text of distinct paragraphs (towns, mayors, rivers): many batches of passages to embed."""
    path.write_text("\n\n".join(
        f"Le rapport numéro {i} décrit la ville de Ville{i}, ses {i * 7} habitants et son maire, M. Nom{i}. "
        f"On y parle aussi de la rivière Rivière{i}, longue de {i + 3} kilomètres, et du marché du {i % 28 + 1} "
        "de chaque mois, où l'on vend des fromages, des légumes et des fleurs de la région."
        for i in range(paragraphs)), encoding="utf-8")
    return path
