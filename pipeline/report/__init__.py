"""The readers' floor, report: ``bias-atlas report`` writes RUN/report/index.html and report.md, the answers to the
research questions read from the findings tables (:mod:`.run_report`; sections in :mod:`.answers`,
:mod:`.answers_structure`, :mod:`.remedies`; wording in :mod:`.claims`; figures in :mod:`.charts`)."""
