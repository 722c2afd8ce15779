"""Tell French from English questions, to answer "no answer" in the user's language."""
from __future__ import annotations

import re

_FRENCH = {
    "qui", "que", "quoi", "quel", "quelle", "quels", "quelles", "où", "quand", "comment", "pourquoi",
    "combien", "est", "sont", "le", "la", "les", "des", "du", "de", "un", "une", "et", "à", "au", "aux",
    "dans", "pour", "sur", "avec", "par", "ce", "cette", "il", "elle", "a", "ont", "qu", "l", "d", "se",
}
_ENGLISH = {
    "who", "what", "which", "where", "when", "how", "why", "is", "are", "was", "were", "the", "a", "an",
    "of", "and", "to", "in", "for", "on", "with", "by", "does", "did", "do", "it", "its", "this", "that",
}
_WORD = re.compile(r"[^\W\d_]+")


def detect_language(text: str) -> str:
    """"fr" or "en", from function words and French accents; English when unsure."""
    words = [w.lower() for w in _WORD.findall(text)]
    french = sum(w in _FRENCH for w in words) + sum(ch in "éèêàùçôîœ" for ch in text.lower())
    english = sum(w in _ENGLISH for w in words)
    return "fr" if french > english else "en"
