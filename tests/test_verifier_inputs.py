"""The verifier reads the candidate span marked exactly, in its own sentence."""
from hypothesis import given
from hypothesis import strategies as st

from rag.verifier.inputs import CLOSE, OPEN, SIDE_CHARS, marked_context

TEXT = ("La société a été fondée en 2023 à Paris. Elle emploie trente personnes ! "
        "Son produit principal est un modèle de langue ouvert, publié sous licence Apache. Fin.")


def test_the_span_is_marked_in_its_own_sentence():
    start = TEXT.index("trente personnes")
    marked = marked_context(TEXT, start, start + len("trente personnes"))
    assert marked == f"Elle emploie {OPEN} trente personnes {CLOSE} !"


def test_sentences_before_the_spans_are_read_when_asked():
    start = TEXT.index("modèle de langue")
    span = (start, start + len("modèle de langue"))
    assert marked_context(TEXT, *span, sentences_before=1) == (
        f"Elle emploie trente personnes ! Son produit principal est un {OPEN} modèle de langue {CLOSE} ouvert, "
        "publié sous licence Apache.")
    assert marked_context(TEXT, *span, sentences_before=5).startswith("La société a été fondée en 2023")


@given(st.text(alphabet="abc .!?\n", min_size=1, max_size=800), st.data(), st.integers(0, 2))
def test_any_span_is_marked_once_and_exactly(text, data, sentences_before):
    start = data.draw(st.integers(0, len(text) - 1))
    end = data.draw(st.integers(start + 1, len(text)))
    marked = marked_context(text, start, end, sentences_before=sentences_before)
    assert marked.count(OPEN) == marked.count(CLOSE) == 1
    inside = marked.split(OPEN + " ", 1)[1].rsplit(" " + CLOSE, 1)[0]
    assert inside == text[start:end]
    left, right = marked.split(OPEN)[0], marked.split(CLOSE)[1]
    assert len(left) <= SIDE_CHARS * (1 + sentences_before) + 1 and len(right) <= SIDE_CHARS + 1
