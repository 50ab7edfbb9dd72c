"""Klio's ``klio_exec.commands.audit_steps``: the base class third-party audit steps subclass."""
