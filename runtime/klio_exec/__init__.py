"""``klio_exec``, Spotify Klio's executor package name, kept for what audit steps written for Klio
import: ``klio_exec.commands.audit_steps.base.BaseKlioAuditStep`` (ours,
:class:`klio_runtime.audit.AuditStep`). Nothing else of Klio's executor is here: ``klio job``
runs jobs itself."""
