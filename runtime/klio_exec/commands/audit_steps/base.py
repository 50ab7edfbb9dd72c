"""Klio's ``klio_exec.commands.audit_steps.base``: its audit-step base class is ours."""

from klio_runtime.audit import AuditStep as BaseKlioAuditStep

__all__ = ["BaseKlioAuditStep"]
