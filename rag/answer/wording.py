"""What the chat and the ``rag`` command say, in the question's language.

One table for both, so the shell and the page never word the same thing two ways."""
from __future__ import annotations

from rag.answer.language import detect_language

LANGUAGE_NAMES = {"en": {"en": "English", "fr": "French"}, "fr": {"en": "anglais", "fr": "français"}}

MESSAGES = {
    "en": {
        "no_answer": "The document does not say.",
        "confidence": "confidence",
        "source": "Source passage",
        "read": "Passages read",
        "other_read": "Other passages read",
        "quoted": "Quoted as written in the {language} document.",
        "empty": "The question is empty: please type a question about the document.",
        "cut": "The question was cut to its first {max_chars} characters.",
        "loading": "The models are still loading; please try again in a few seconds.",
        "not_text": "The question must be text.",
        "bad_history": "The history must be a list of earlier questions (text), oldest first.",
        "not_loaded": "The models could not be loaded: {error}",
        "characters": "characters",
        "empty_collection": ("Collection {name!r} has no documents yet: add some (the chat's upload, "
                             "or rag add FILE --collection {name})."),
        "page": "page",
        "open": "Open the document at this passage",
        "no_document": "This document is not in the collection (removed?).",
        "bad_collection": ("That is not a collection name: use up to 64 letters, digits, '.', '-' or '_', "
                           "starting with a letter or digit."),
        "new_collection": "New collection {name}: add files under Documents to ask about them.",
        "documents_only": "This chat answers from the documents it was started with; it has no collections.",
        "add_failed": "The files could not be added; the collection is unchanged.",
    },
    "fr": {
        "no_answer": "Le document ne le dit pas.",
        "confidence": "confiance",
        "source": "Passage source",
        "read": "Passages lus",
        "other_read": "Autres passages lus",
        "quoted": "Cité tel quel du document en {language}.",
        "empty": "La question est vide : veuillez poser une question sur le document.",
        "cut": "La question a été coupée à ses {max_chars} premiers caractères.",
        "loading": "Les modèles se chargent encore ; réessayez dans quelques secondes.",
        "not_text": "La question doit être du texte.",
        "bad_history": ("L'historique doit être une liste des questions précédentes (du texte), "
                        "la plus ancienne d'abord."),
        "not_loaded": "Les modèles n'ont pas pu être chargés : {error}",
        "characters": "caractères",
        "empty_collection": ("La collection {name!r} n'a pas encore de document : ajoutez-en (le bouton d'ajout "
                             "du chat, ou rag add FICHIER --collection {name})."),
        "page": "page",
        "open": "Ouvrir le document à ce passage",
        "no_document": "Ce document n'est pas dans la collection (retiré ?).",
        "bad_collection": ("Ce n'est pas un nom de collection : jusqu'à 64 lettres, chiffres, « . », « - » ou "
                           "« _ », commençant par une lettre ou un chiffre."),
        "new_collection": "Nouvelle collection {name} : ajoutez des fichiers sous Documents pour les interroger.",
        "documents_only": ("Ce chat répond à partir des documents donnés au démarrage ; il n'a pas de "
                           "collections."),
        "add_failed": "Les fichiers n'ont pas pu être ajoutés ; la collection est inchangée.",
    },
}


def words_for(language: str) -> dict[str, str]:
    return MESSAGES.get(language, MESSAGES["en"])


def both_languages(key: str) -> str:
    """A message for input that has no language of its own (a number instead of a question)."""
    return f"{MESSAGES['en'][key]} · {MESSAGES['fr'][key]}"


def percent(score: float, language: str) -> str:
    """74% in English, 74 % in French (a narrow no-break space, as French typography sets it)."""
    return f"{score:.0%}" if language == "en" else f"{round(score * 100)}\u202f%"


def quoted_note(question_language: str, passage: str) -> str | None:
    """Why an answer is in another language than its question: it is the
    document's own words. None when the passage is in the question's language."""
    passage_language = detect_language(passage)
    if passage_language == question_language:
        return None
    words = words_for(question_language)
    return words["quoted"].format(language=LANGUAGE_NAMES[question_language][passage_language])
