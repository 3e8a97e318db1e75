"""A peer's Ed25519 identity: one key for the libp2p host and the ledger.

The key lives in ``<data-dir>/identity.key`` as PKCS#8 PEM, mode 0600. The
libp2p peer ID derives from the public key, and the same key signs ledger
entries, so a ledger "author" is the libp2p peer ID that published the entry.

Example:
    >>> ident = Identity.generate()
    >>> ident.peer_id.startswith("12D3KooW")
    True
    >>> verify_signature(ident.peer_id, b"msg", ident.sign(b"msg"))
    True

Export formats (``learnae key export``):
    * ``libp2p-protobuf``: the libp2p ``PrivateKey`` protobuf with the 64-byte
      seed+public key go-libp2p and Kubo expect (``ipfs key import`` reads it as
      ``libp2p-protobuf-cleartext``). py-libp2p 0.8.1 itself writes only the 32-byte
      seed; :func:`Identity.from_bytes` accepts both.
    * ``pem-pkcs8``: PKCS#8 PEM (``ipfs key import --format=pem-pkcs8-cleartext``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import base58
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from learnae.errors import KeyFileError
from learnae.fsutil import atomic_write

__all__ = [
    "Identity",
    "KEY_FILE",
    "EXPORT_FORMATS",
    "peer_id_from_public_key",
    "public_key_from_peer_id",
    "verify_signature",
]

KEY_FILE = "identity.key"
EXPORT_FORMATS = ("libp2p-protobuf", "pem-pkcs8")

# libp2p key protobufs (crypto.proto): field 1 varint KeyType (Ed25519 = 1),
# field 2 bytes Data. Fixed-size for Ed25519, so the bytes are a constant prefix.
_PB_ED25519_PUB = b"\x08\x01\x12\x20"  # Data: 32-byte public key
_PB_ED25519_PRIV64 = b"\x08\x01\x12\x40"  # Data: 32-byte seed + 32-byte public key (go)
_PB_ED25519_PRIV32 = b"\x08\x01\x12\x20"  # Data: 32-byte seed (py-libp2p)
# A peer ID is the identity multihash (code 0x00, length 36) of the public key protobuf.
_IDENTITY_MH = b"\x00\x24"


def peer_id_from_public_key(public_key: bytes) -> str:
    """Return the base58 libp2p peer ID (``12D3KooW...``) of a raw 32-byte Ed25519 key."""
    if len(public_key) != 32:
        raise ValueError(f"an Ed25519 public key has 32 bytes, got {len(public_key)}")
    return base58.b58encode(_IDENTITY_MH + _PB_ED25519_PUB + public_key).decode("ascii")


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Extract the raw Ed25519 public key embedded in a peer ID.

    Raises:
        ValueError: if ``peer_id`` is not an Ed25519 identity-multihash peer ID.
    """
    try:
        raw = base58.b58decode(peer_id)
    except ValueError as exc:
        raise ValueError(f"peer ID {peer_id!r} is not base58") from exc
    prefix = _IDENTITY_MH + _PB_ED25519_PUB
    if len(raw) != len(prefix) + 32 or not raw.startswith(prefix):
        raise ValueError(f"peer ID {peer_id!r} is not an Ed25519 libp2p peer ID")
    return raw[len(prefix):]


def verify_signature(peer_id: str, data: bytes, signature: bytes) -> bool:
    """Check an Ed25519 ``signature`` over ``data`` by the key behind ``peer_id``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(public_key_from_peer_id(peer_id))
        key.verify(signature, data)
    except (ValueError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True, slots=True)
class Identity:
    """An Ed25519 private key and the libp2p peer ID derived from it."""

    private_key: Ed25519PrivateKey
    # Derived once: signing and verifying code asks for the peer ID constantly.
    peer_id: str = field(init=False, repr=True, compare=False)

    def __post_init__(self) -> None:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        object.__setattr__(self, "peer_id", peer_id_from_public_key(public))

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """Build an identity from a 32-byte seed (deterministic; for tests and simulations)."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def seed(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, data: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``data``."""
        return self.private_key.sign(data)

    def to_libp2p_keypair(self):
        """The same key as a py-libp2p ``KeyPair`` for ``new_host(key_pair=...)``."""
        from libp2p.crypto.ed25519 import Ed25519PrivateKey as P2PPrivateKey
        from libp2p.crypto.keys import KeyPair

        private = P2PPrivateKey.from_bytes(self.seed)
        return KeyPair(private, private.get_public_key())

    # -- serialization -------------------------------------------------------

    def to_bytes(self, fmt: str = "pem-pkcs8") -> bytes:
        """Serialize the private key in one of :data:`EXPORT_FORMATS`."""
        if fmt == "libp2p-protobuf":
            return _PB_ED25519_PRIV64 + self.seed + self.public_key
        if fmt == "pem-pkcs8":
            return self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        raise ValueError(f"unknown key format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Identity:
        """Parse a key in any export format (PEM, or libp2p protobuf with 32 or 64 bytes).

        Raises:
            KeyFileError: (a ``ValueError``) and nothing else, whatever ``data``
                holds: the bytes are none of the supported forms, or a 64-byte
                protobuf key's public half does not match its seed.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise KeyFileError(f"a key is bytes, not {type(data).__name__}")
        data = bytes(data)
        if data.lstrip().startswith(b"-----BEGIN"):
            try:
                key = serialization.load_pem_private_key(data, password=None)
            except Exception as exc:  # noqa: BLE001 - ValueError, TypeError, UnsupportedAlgorithm, ...
                # cryptography's messages can span lines; the first says what is wrong
                detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
                raise KeyFileError(f"unreadable PEM key: {detail}") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise KeyFileError("the PEM key is not an Ed25519 key")
            return cls(key)
        if len(data) == 68 and data.startswith(_PB_ED25519_PRIV64):
            ident = cls.from_seed(data[4:36])
            if ident.public_key != data[36:]:
                raise KeyFileError("the key's public half does not match its seed")
            return ident
        if len(data) == 36 and data.startswith(_PB_ED25519_PRIV32):
            return cls.from_seed(data[4:])
        raise KeyFileError("not an Ed25519 key in PEM (PKCS#8) or libp2p protobuf form")

    # -- key file --------------------------------------------------------------

    def save(self, path: Path, *, overwrite: bool = False) -> None:
        """Write the key atomically as PEM with mode 0600.

        Raises:
            KeyFileError: if ``path`` exists and ``overwrite`` is false.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise KeyFileError(
                f"{path} already exists; pass --force to replace it (the old peer ID is lost)"
            )
        atomic_write(path, self.to_bytes("pem-pkcs8"), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key file, refusing one that other users can read.

        Raises:
            KeyFileError: and nothing else: missing, unreadable, not a regular
                file, too open (group/other bits set) or malformed.
        """
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise KeyFileError(
                f"{path}: no identity key; create one with `learnae key new`"
            ) from None
        except OSError as exc:  # e.g. a parent directory without permission
            raise KeyFileError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: the key file is not a regular file; move it away or pass another data dir")
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{path}: key file is accessible by other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"fix with `chmod 600 {path}`"
            )
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read the key file ({exc.strerror or exc})") from None
        try:
            return cls.from_bytes(raw)
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from None

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Identity:
        """Load ``<data_dir>/identity.key``, creating a new key on first use."""
        path = Path(data_dir) / KEY_FILE
        if not os.path.lexists(path):  # never raises: a path it cannot check is left to load()
            ident = cls.generate()
            try:
                ident.save(path)
            except KeyFileError:  # lost a race with another process: use its key
                pass
            else:
                return ident
        return cls.load(path)

