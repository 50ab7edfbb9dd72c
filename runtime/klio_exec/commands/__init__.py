"""Klio's ``klio_exec.commands``: only what audit steps import (see ``klio_exec``)."""
