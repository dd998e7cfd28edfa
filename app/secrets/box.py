"""SecretBox: the only user of `cryptography.fernet` (authenticated encryption, AES-128-CBC +
HMAC-SHA256, with a timestamp). `secrets.keys` lists Fernet keys: the first encrypts, every one
decrypts (MultiFernet), so a new key is rolled out by putting it first and an old one retired
after `storefront secrets rotate-key` has re-encrypted everything under the new one.

No key configured: the box exists but every use raises `secrets.not_configured` (no ephemeral
key: a secret written under a key that dies with the process could never be read again).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from app.secrets.errors import SecretsNotConfigured, SecretUndecryptable


def generate_key() -> str:
    """A new Fernet key (32 random bytes, url-safe base64) for `secrets.keys`."""
    return Fernet.generate_key().decode()


def check_key(key: str) -> None:
    """ValueError (without the key in its message) unless `key` is a Fernet key."""
    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        raise ValueError("not a Fernet key (32 bytes, url-safe base64 encoded)") from None


class SecretBox:
    def __init__(self, keys: Sequence[SecretStr]) -> None:
        self._primary: Fernet | None = None
        self._all: MultiFernet | None = None
        fernets = [Fernet(key.get_secret_value().encode()) for key in keys]
        if fernets:
            self._primary = fernets[0]
            self._all = MultiFernet(fernets)
        self._count = len(fernets)

    def __repr__(self) -> str:
        return f"SecretBox(keys={self._count})"

    @property
    def configured(self) -> bool:
        return self._all is not None

    def check_configured(self) -> None:
        """Raise `secrets.not_configured` when there is no key."""
        self._fernet()

    def _fernet(self) -> MultiFernet:
        if self._all is None:
            raise SecretsNotConfigured("tenant secrets need secrets.keys (no key is configured)")
        return self._all

    def encrypt(self, plaintext: SecretStr) -> bytes:
        """Ciphertext under the first key."""
        return self._fernet().encrypt(plaintext.get_secret_value().encode())

    def decrypt(self, ciphertext: bytes) -> SecretStr:
        try:
            plaintext = self._fernet().decrypt(ciphertext)
        except InvalidToken:
            raise SecretUndecryptable(
                "a stored secret cannot be decrypted with any key in secrets.keys"
            ) from None
        return SecretStr(plaintext.decode())

    def is_current(self, ciphertext: bytes) -> bool:
        """Already encrypted under the first key (nothing for rotate-key to do)."""
        self._fernet()
        assert self._primary is not None
        try:
            self._primary.decrypt(ciphertext)
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: bytes) -> bytes:
        """The same plaintext re-encrypted under the first key (its timestamp is kept)."""
        try:
            return self._fernet().rotate(ciphertext)
        except InvalidToken:
            raise SecretUndecryptable(
                "a stored secret cannot be decrypted with any key in secrets.keys"
            ) from None
