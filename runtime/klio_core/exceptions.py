"""``klio_core.exceptions``: Klio's import path for the config templating error; the class is ours.

``KlioConfigTemplatingException(key)`` is raised when a ``$KEY`` in ``klio-job.yaml`` has no
template value (``-T KEY=VALUE``, or ``KlioConfig(raw, raw_templates=[...])``). It is a
``ConfigError`` too, so code catching either sees it.
"""

from klio_runtime.config import TemplateVariableMissing as KlioConfigTemplatingException

__all__ = ["KlioConfigTemplatingException"]
