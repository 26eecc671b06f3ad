"""The entry floor: the ``bias-atlas`` command line (:mod:`.main`), the run commands (:mod:`.run_commands`) and the
complete run that joins measuring, findings and report (:mod:`.full_run`). Nothing imports it but the
``python -m`` aliases."""
