"""The readers' floor, figures: every matplotlib figure of the tool (:mod:`.plots` re-exports them; :mod:`.style`
holds labels, palettes and sign conventions) and ``bias-atlas figures`` (:mod:`.run_figures`)."""
