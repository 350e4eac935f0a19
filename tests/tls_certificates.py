"""A throwaway CA and a leaf certificate for TLS servers the tests run on loopback.

Made with `cryptography` (the library ansible-core itself needs). Python 3.13 verifies strictly
(VERIFY_X509_STRICT), so the certificates carry key identifiers and the CA its key usage.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_USAGE = x509.KeyUsage(
    digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
    key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    names: list[x509.GeneralName] | None,
    days: int = 1,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=names is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if names is None:
        builder = builder.add_extension(CA_USAGE, critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_ca_and_leaf(directory: Path, dns_names: tuple[str, ...] = ("localhost",), days: int = 1) -> Path:
    """ca.pem (and its key, ca-key.pem), cert.pem and key.pem (the leaf for ``dns_names`` and
    127.0.0.1, valid for ``days``) under ``directory``.

    Returns the CA file. leaf.pem holds the certificate and its key together.
    """
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("test CA", ca_key, ca_key, None, None, days=max(days, 1))
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    leaf = _certificate(dns_names[0], leaf_key, ca_key, ca.subject, names, days=days)
    certificate = leaf.public_bytes(serialization.Encoding.PEM)
    key = _pem_key(leaf_key)
    (directory / "ca-key.pem").write_bytes(_pem_key(ca_key))
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "cert.pem").write_bytes(certificate)
    (directory / "key.pem").write_bytes(key)
    (directory / "leaf.pem").write_bytes(certificate + key)
    return directory / "ca.pem"
