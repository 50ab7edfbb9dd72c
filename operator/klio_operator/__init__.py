"""The KlioJob operator: KlioJob custom resources become running, wired, observable jobs."""

__version__ = "0.1.0"
