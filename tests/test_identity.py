"""Identity: peer IDs libp2p agrees with, key files that stay private, Kubo-compatible export."""

from __future__ import annotations

import os

import pytest
from libp2p.crypto.pb import crypto_pb2
from libp2p.peer.id import ID

from learnae.errors import KeyFileError
from learnae.identity import (
    Identity,
    peer_id_from_public_key,
    public_key_from_peer_id,
    verify_signature,
)


def test_peer_id_matches_py_libp2p():
    ident = Identity.generate()
    kp = ident.to_libp2p_keypair()
    assert ID.from_pubkey(kp.public_key).to_base58() == ident.peer_id
    assert ident.peer_id.startswith("12D3KooW")
    assert public_key_from_peer_id(ident.peer_id) == ident.public_key


def test_signatures_verify_only_for_the_signer_and_the_message():
    a, b = Identity.generate(), Identity.generate()
    sig = a.sign(b"entry")
    assert verify_signature(a.peer_id, b"entry", sig)
    assert not verify_signature(b.peer_id, b"entry", sig)
    assert not verify_signature(a.peer_id, b"entrY", sig)
    assert not verify_signature("QmNotAnEd25519PeerId", b"entry", sig)


def test_key_file_is_created_private_and_reloads(tmp_path):
    path = tmp_path / "identity.key"
    ident = Identity.generate()
    ident.save(path)
    assert (os.stat(path).st_mode & 0o777) == 0o600
    assert Identity.load(path).peer_id == ident.peer_id


def test_key_file_readable_by_others_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "identity.key"
    Identity.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match=f"chmod 600 {path}"):
        Identity.load(path)


def test_existing_key_is_not_overwritten_silently(tmp_path):
    path = tmp_path / "identity.key"
    first = Identity.generate()
    first.save(path)
    with pytest.raises(KeyFileError, match="--force"):
        Identity.generate().save(path)
    assert Identity.load(path).peer_id == first.peer_id


def test_load_or_create_is_stable(tmp_path):
    a = Identity.load_or_create(tmp_path)
    b = Identity.load_or_create(tmp_path)
    assert a.peer_id == b.peer_id


def test_export_is_the_64_byte_libp2p_protobuf_go_expects():
    ident = Identity.generate()
    blob = ident.to_bytes("libp2p-protobuf")
    msg = crypto_pb2.PrivateKey()
    msg.ParseFromString(blob)
    assert msg.key_type == crypto_pb2.KeyType.Ed25519
    assert msg.data == ident.seed + ident.public_key  # go-libp2p layout: seed || public key


@pytest.mark.parametrize("fmt", ["libp2p-protobuf", "pem-pkcs8"])
def test_export_import_round_trip(fmt):
    ident = Identity.generate()
    assert Identity.from_bytes(ident.to_bytes(fmt)).peer_id == ident.peer_id


def test_import_accepts_py_libp2p_32_byte_form():
    ident = Identity.generate()
    msg = crypto_pb2.PrivateKey(key_type=crypto_pb2.KeyType.Ed25519, data=ident.seed)
    assert Identity.from_bytes(msg.SerializeToString()).peer_id == ident.peer_id


def test_import_rejects_mismatched_halves_and_garbage():
    a, b = Identity.generate(), Identity.generate()
    forged = a.to_bytes("libp2p-protobuf")[:36] + b.public_key
    with pytest.raises(ValueError, match="does not match"):
        Identity.from_bytes(forged)
    with pytest.raises(ValueError):
        Identity.from_bytes(b"not a key")


def test_peer_id_rejects_wrong_length():
    with pytest.raises(ValueError):
        peer_id_from_public_key(b"\x00" * 31)


def _pem(key, encryption=None) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption())


def _hostile_keys() -> list[bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, x25519
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    good = Identity.generate().to_bytes("pem-pkcs8")
    lines = good.split(b"\n")
    return [
        _pem(ec.generate_private_key(ec.SECP256R1())),  # another algorithm
        _pem(x25519.X25519PrivateKey.generate()),
        _pem(ed448.Ed448PrivateKey.generate()),
        _pem(Ed25519PrivateKey.generate(), serialization.BestAvailableEncryption(b"pw")),  # encrypted: TypeError
        Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        b"\n".join([lines[0], b"!!!!" + lines[1][4:], *lines[2:]]),  # bad base64
        b"\n".join([lines[0], b"MAMCAQA=", lines[-2]]),  # DER that is not a key
        b"-----BEGIN PRIVATE KEY-----\n",
        b"   -----BEGIN \xff\xfe",
        b"",
    ]


def test_every_malformed_key_is_a_key_file_error():
    for raw in _hostile_keys():
        with pytest.raises(KeyFileError):
            Identity.from_bytes(raw)
    with pytest.raises(KeyFileError):
        Identity.from_bytes("a str")  # type: ignore[arg-type]


def test_a_bad_key_file_is_one_key_file_error_naming_it(tmp_path):
    path = tmp_path / "identity.key"
    for raw in _hostile_keys():
        path.write_bytes(raw)
        os.chmod(path, 0o600)
        with pytest.raises(KeyFileError, match=str(path)):
            Identity.load(path)


def test_a_key_path_that_is_no_file_is_a_key_file_error(tmp_path):
    (tmp_path / "identity.key").mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        Identity.load(tmp_path / "identity.key")
    with pytest.raises(KeyFileError, match="not a regular file"):
        Identity.load_or_create(tmp_path)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(KeyFileError):  # a data dir that is a file: NotADirectoryError before
        Identity.load(blocker / "identity.key")
