"""The web chat's parts: its server side (``chat_app``), the replies it shows
(``reply``), the cited document opened at the answer (``source_view``), the
conversations a browser keeps (``conversations``), and the page's style and
scripts (``assets``). ``ui.py`` builds the Gradio page from them."""
