"""``klio_core.utils``: Klio's import path for process-wide values shared by a job's steps (and
its publisher per topic)."""

from klio_runtime.process_globals import (
    delete_global,
    get_global,
    get_or_initialize_global,
    get_publisher,
    set_global,
)

__all__ = ["delete_global", "get_global", "get_or_initialize_global", "get_publisher", "set_global"]
