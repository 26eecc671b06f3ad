"""The readers' floor, viewer: the Streamlit pages of ``app.py`` (:mod:`.widgets` is their plumbing), the playground
and the head inspector (which compute through the base), and ``bias-atlas view`` (:mod:`.serve`)."""
