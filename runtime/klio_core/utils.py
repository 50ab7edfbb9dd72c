"""``klio_core.utils``: Klio's import path for process-wide values shared by a job's steps."""

from klio_runtime.process_globals import (
    delete_global,
    get_global,
    get_or_initialize_global,
    set_global,
)

__all__ = ["delete_global", "get_global", "get_or_initialize_global", "set_global"]
