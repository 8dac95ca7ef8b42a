"""Identity and authorization. For now only the access hook every request passes
through; the OpenShift-style authenticator and authorizer plug in here."""

from auth.access import Access, AccessController, AllowAll, ApiAccess, Check, Identity

__all__ = ["Access", "AccessController", "AllowAll", "ApiAccess", "Check", "Identity"]
