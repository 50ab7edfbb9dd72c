"""The KlioJob operator: KlioJob custom resources become running, wired, observable jobs.

Importing the package registers the handlers on kopf's default registry, so that
`kopf run -m klio_operator` runs the operator as `klio-operator run` does.
"""

__version__ = "0.1.0"

OPERATOR_ONLY_MODULES = frozenset({"kopf", "kubernetes", "aiohttp"})
"""What only the operator's extra installs: without it, `klio-operator render` and `manifest`
still work, and `run` says what to install."""

try:
    from klio_operator import handlers as _handlers  # noqa: F401  (registers the handlers)
except ModuleNotFoundError as err:
    if err.name not in OPERATOR_ONLY_MODULES:
        raise
