"""``python -m klio_runtime.cli``: the ``klio`` command (how ``klio job profile`` starts the run it
samples, with this very interpreter)."""

from klio_runtime.cli import main

if __name__ == "__main__":
    main(prog_name="klio")
