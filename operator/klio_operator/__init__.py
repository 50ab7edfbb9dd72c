"""The KlioJob operator: KlioJob custom resources become running, wired, observable jobs.

Importing the package registers the handlers on kopf's default registry, so that
`kopf run -m klio_operator` runs the operator as `klio-operator run` does.
"""

__version__ = "0.1.0"

from klio_operator import handlers as _handlers  # noqa: F401  (registers the handlers)
