"""The operator console's password (``B24NOTIFY_CONSOLE_PASSWORD`` or ``_PASSWORD_HASH``) and its
session key: plain values, part of the settings (the console itself is ``b24notify/console/``).

A stored hash is self-describing, so a hash made with more iterations later still verifies:

* ``pbkdf2_sha256$ITERATIONS$SALT$HASH`` (what ``b24notify console hash-password`` prints);
* ``scrypt$N$R$P$SALT$HASH`` (accepted, e.g. made by another tool);

``SALT`` and ``HASH`` are base64 (standard alphabet, padding optional). Nothing here ever puts a
password, a hash or a key into an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field

PBKDF2 = "pbkdf2_sha256"
SCRYPT = "scrypt"
# OWASP's floor for PBKDF2-HMAC-SHA256 (2023): about 0.3 s on one core; a hash with fewer is refused.
PBKDF2_ITERATIONS = 600_000
SCRYPT_MIN_N = 2**14
SALT_BYTES = 16
MIN_PASSWORD_CHARS = 12  # online guessing is rate-limited, but the password may be all that stands
MIN_SECRET_CHARS = 32


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, validate=True)


def _number(text: str) -> int:
    if not text.isdigit() or len(text) > 12:
        raise ValueError("has a parameter that is not a number")
    return int(text)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class PasswordHash:
    algorithm: str  # PBKDF2 | SCRYPT
    params: tuple[int, ...]  # (iterations,) | (n, r, p)
    salt: bytes = field(repr=False)
    digest: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        parts = text.strip().split("$")
        try:
            if parts[0] == PBKDF2 and len(parts) == 4:
                iterations = _number(parts[1])
                if iterations < PBKDF2_ITERATIONS:
                    raise ValueError(f"has fewer than {PBKDF2_ITERATIONS} iterations: make a new one with "
                                     "`b24notify console hash-password`")
                made = cls(PBKDF2, (iterations,), _b64decode(parts[2]), _b64decode(parts[3]))
            elif parts[0] == SCRYPT and len(parts) == 6:
                n, r, p = _number(parts[1]), _number(parts[2]), _number(parts[3])
                if n < SCRYPT_MIN_N or n & (n - 1) or r < 1 or p < 1:
                    raise ValueError(f"scrypt needs N a power of two of at least {SCRYPT_MIN_N}, R and P >= 1")
                made = cls(SCRYPT, (n, r, p), _b64decode(parts[4]), _b64decode(parts[5]))
            else:
                raise ValueError("must look like pbkdf2_sha256$ITERATIONS$SALT$HASH or scrypt$N$R$P$SALT$HASH "
                                 "(`b24notify console hash-password` prints one)")
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError("has a salt or hash that is not base64") from None
        if len(made.salt) < 8 or len(made.digest) < 16:
            raise ValueError("has a salt or hash that is too short")
        return made

    def format(self) -> str:
        return "$".join([self.algorithm, *map(str, self.params), _b64encode(self.salt), _b64encode(self.digest)])

    def derive(self, password: str) -> bytes:
        secret = password.encode("utf-8", "surrogateescape")
        if self.algorithm == PBKDF2:
            return hashlib.pbkdf2_hmac("sha256", secret, self.salt, self.params[0], dklen=len(self.digest))
        n, r, p = self.params
        return hashlib.scrypt(secret, salt=self.salt, n=n, r=r, p=p, dklen=len(self.digest),
                              maxmem=2 * 128 * n * r * p + 2**20)

    def matches(self, password: str) -> bool:
        """Constant time in the password (the derivation's cost does not depend on it)."""
        return hmac.compare_digest(self.derive(password), self.digest)


def hash_password(password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None) -> str:
    """The string for ``B24NOTIFY_CONSOLE_PASSWORD_HASH``."""
    check_password(password)
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogateescape"), salt, iterations)
    return PasswordHash(PBKDF2, (iterations,), salt, digest).format()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"must be at least {MIN_PASSWORD_CHARS} characters long")
    if password != password.strip():
        raise ValueError("must not begin or end with a space")


def password_matches(given: str, password: str | None, password_hash: str | None) -> bool:
    """Check ``given`` against the plain password or the hash (one of them is set). The plain one
    is compared as SHA-256 digests, so neither its length nor its content shows in the timing."""
    if password_hash:
        return PasswordHash.parse(password_hash).matches(given)
    if not password:
        return False
    want = hashlib.sha256(password.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest(), want)


def derive_session_key(password_or_hash: str, *, key_prefix: str, others: tuple[str, ...] = ()) -> bytes:
    """The console's session-signing key when ``B24NOTIFY_CONSOLE_SECRET`` is not set: HMAC-SHA256
    keyed by the password (or its hash) over the key prefix and the other secrets the process has
    (``B24_WEBHOOK_URL``, ``B24_APPLICATION_TOKEN``, ``B24_CLIENT_SECRET``). Every web process with
    the same settings derives the same key; changing the password signs everybody out; and the
    hash alone (which need not be kept as secret as a password) is not enough to forge a session
    while one of those other secrets is set."""
    message = "\0".join(("b24notify console session v1", key_prefix, *others)).encode("utf-8", "surrogateescape")
    return hmac.new(password_or_hash.encode("utf-8", "surrogateescape"), message, hashlib.sha256).digest()
