"""Tenant secrets at rest: encrypted with Fernet keys from `secrets.keys`, shown once."""
