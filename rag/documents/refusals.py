"""Why a file cannot become a document, in English and French.

A refusal names the file (never the folder it sits in: an upload's folder is
the server's business) and gives a reason a user can act on; the library's
own error, which means nothing to a user, goes to the log instead."""
from __future__ import annotations

from dataclasses import dataclass

REASONS: dict[str, tuple[str, str]] = {
    "unsupported": ("{name}: {suffix} is not supported (supported: {supported})",
                    "{name} : le format {suffix} n'est pas pris en charge (formats pris en charge : {supported})"),
    "no_suffix": ("{name}: files without a suffix are not supported (supported: {supported})",
                  "{name} : les fichiers sans extension ne sont pas pris en charge (formats pris en charge : "
                  "{supported})"),
    "folder": ("{name} is a folder: give a document file", "{name} est un dossier : donnez un fichier"),
    "missing": ("{name} does not exist", "{name} n'existe pas"),
    "unreadable_file": ("{name} cannot be read ({why})", "{name} ne peut pas être lu ({why})"),
    "too_large": ("{name} is {size:.1f} MB, over the {limit:.0f} MB limit",
                  "{name} fait {size:.1f} Mo, au-delà de la limite de {limit:.0f} Mo"),
    "empty": ("{name} is empty", "{name} est vide"),
    "no_text": ("{name} has no text", "{name} ne contient pas de texte"),
    "encoding": ("{name} is not text in an encoding that can be recognised: save it as UTF-8",
                 "{name} n'est pas du texte dans un encodage reconnaissable : enregistrez-le en UTF-8"),
    "encrypted_pdf": ("{name} is an encrypted PDF: save a copy without a password and add that",
                      "{name} est un PDF chiffré : enregistrez-en une copie sans mot de passe et ajoutez-la"),
    "bad_pdf": ("{name} is not a readable PDF: the file is damaged or is not a PDF",
                "{name} n'est pas un PDF lisible : le fichier est abîmé ou n'est pas un PDF"),
    "scanned_pdf": ("{name} has no text layer (a scanned PDF?): OCR is not included, so save it as a PDF with "
                    "text, or as text",
                    "{name} n'a pas de couche texte (un PDF scanné ?) : la reconnaissance de caractères n'est pas "
                    "incluse, enregistrez-le en PDF avec texte, ou en texte"),
    "bad_docx": ("{name} is not a readable Word (.docx) file: the file is damaged or is not a .docx",
                 "{name} n'est pas un fichier Word (.docx) lisible : le fichier est abîmé ou n'est pas un .docx"),
    "unpacked_too_large": ("{name} unpacks to {size:.0f} MB, over the {limit:.0f} MB limit",
                           "{name} se décompresse en {size:.0f} Mo, au-delà de la limite de {limit:.0f} Mo"),
    "compression_ratio": ("{name} is compressed {ratio:.0f} times (over {limit} times): refused as a likely "
                          "zip bomb",
                          "{name} est compressé {ratio:.0f} fois (plus de {limit} fois) : refusé, c'est "
                          "probablement une bombe de décompression"),
    "text_too_large": ("{name} gives over {limit:.0f} MB of text: split it into smaller files",
                       "{name} donne plus de {limit:.0f} Mo de texte : découpez-le en fichiers plus petits"),
    "timeout": ("{name} took longer than {seconds:g} s to read and was stopped: save it in a simpler form "
                "(plain text, or a PDF with text)",
                "la lecture de {name} a duré plus de {seconds:g} s et a été arrêtée : enregistrez-le sous une "
                "forme plus simple (texte, ou PDF avec texte)"),
    "memory": ("{name} needs more than {mb} MB of memory to read and was stopped",
               "la lecture de {name} demande plus de {mb} Mo de mémoire et a été arrêtée"),
    "reader_failed": ("{name} could not be read: its reader stopped unexpectedly",
                      "{name} n'a pas pu être lu : sa lecture s'est arrêtée de façon inattendue"),
    "same_name": ("{name}: another file of this add has the same name",
                  "{name} : un autre fichier de cet ajout porte le même nom"),
}


@dataclass(frozen=True)
class Refusal:
    """Why one file was not added: ``str()`` gives the English, ``fr`` the French."""

    key: str
    en: str
    fr: str

    def __str__(self) -> str:
        return self.en

    def both(self) -> str:
        """Both languages, for a page that speaks both."""
        return f"{self.en} · {self.fr}"


def refusal(key: str, **values) -> Refusal:
    english, french = REASONS[key]
    return Refusal(key, english.format(**values), french.format(**values))


class UnreadableDocument(ValueError):
    """The file cannot be turned into text; ``refusal`` says why, in both languages."""

    def __init__(self, reason: Refusal) -> None:
        self.refusal = reason
        super().__init__(reason.en)


def unreadable(key: str, **values) -> UnreadableDocument:
    return UnreadableDocument(refusal(key, **values))
