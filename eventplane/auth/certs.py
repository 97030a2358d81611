"""The cluster PKI: a CA, the API server's serving certificate, client certificates.

`eventplane up` (and `eventplane apiserver`) call `ensure_pki` on every start
with the directory DATA_DIR/pki and the names the server is reached by. The
first start creates the CA and the serving certificate; later starts reuse
them, and re-issue only the serving certificate when it no longer covers the
hosts asked for or is about to expire. The CA is never replaced silently:
every kubeconfig and client certificate handed out trusts or chains to it.

The API server takes `Pki.server_ssl_context()`; client certificates from
`issue_client_cert` carry the user in CN and the groups in O, exactly how
Kubernetes reads a client certificate, so `authenticate` maps them back.

Files (keys 0600, certificates 0644, each written atomically):
    ca.crt ca.key apiserver.crt apiserver.key
"""
from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger("eventplane.auth.certs")

CA_COMMON_NAME = "eventplane-ca"
SERVER_COMMON_NAME = "eventplane-apiserver"
CA_DAYS = 3650
SERVER_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
# Certificates start a little in the past so that a peer whose clock lags ours
# does not reject a certificate issued a moment ago (kubeadm does the same).
BACKDATE = dt.timedelta(minutes=5)
# Names every serving certificate carries: local access, and the names pods
# use for the API server in Kubernetes (the `kubernetes` Service).
DEFAULT_SERVER_HOSTS = (
    "localhost", "127.0.0.1", "::1",
    "kubernetes", "kubernetes.default", "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
# X.509 upper bound of a CommonName/Organization value (RFC 5280).
_MAX_NAME_LENGTH = 64

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# We create EC P-256 CAs; an RSA CA put in place by an operator signs just as well.
CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class PkiError(RuntimeError):
    """The PKI directory is in a state we must not repair by guessing (e.g. a CA key is missing)."""


@dataclass(frozen=True)
class Pki:
    """The paths of a PKI directory, and the TLS contexts made from them."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    @classmethod
    def in_dir(cls, pki_dir: Path) -> Pki:
        d = Path(pki_dir)
        return cls(dir=d, ca_cert=d / "ca.crt", ca_key=d / "ca.key",
                   server_cert=d / "apiserver.crt", server_key=d / "apiserver.key")

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, as kubeconfigs embed it (certificate-authority-data)."""
        return self.ca_cert.read_bytes()

    def server_ssl_context(self) -> ssl.SSLContext:
        """The API server's TLS: our serving certificate; client certificates optional, verified against our CA.

        CERT_OPTIONAL makes a handshake with a certificate that does not chain
        to our CA fail, while a client without one (a bearer token, or nobody)
        gets through to authentication. Only our CA is loaded — never the
        system's — so no publicly issued certificate can name a user. ALPN
        offers only http/1.1: kubectl also offers h2, which we do not speak.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.server_cert, self.server_key)
        ctx.load_verify_locations(cafile=str(self.ca_cert))
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def client_ssl_context(self, cert: Path | str | bytes | None = None,
                           key: Path | str | bytes | None = None) -> ssl.SSLContext:
        """A client's TLS trusting only our CA, presenting `cert`/`key` (paths or PEM bytes) when given."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            _load_cert_chain(ctx, cert, key)
        return ctx


def ensure_pki(pki_dir: Path, *, hosts: Iterable[str]) -> Pki:
    """Create or reuse the PKI in `pki_dir`; the serving certificate covers `hosts` plus DEFAULT_SERVER_HOSTS.

    `hosts` are the names and addresses clients reach the server by (IP
    addresses become IP SANs, anything else DNS SANs). Safe to call from
    several processes at once: they serialize on a lock file in the directory.
    """
    pki = Pki.in_dir(pki_dir)
    pki.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    wanted = _san_set([*DEFAULT_SERVER_HOSTS, *hosts])
    with _locked(pki.dir / ".lock"):
        ca_cert, ca_key = _ensure_ca(pki)
        _ensure_server_cert(pki, ca_cert, ca_key, wanted)
    return pki


def issue_client_cert(pki: Pki, user: str, groups: Iterable[str], *,
                      days: int = 365) -> tuple[bytes, bytes]:
    """A client certificate for `user` in `groups`, signed by the CA: (cert_pem, key_pem).

    CN = user and one O per group: how Kubernetes turns a client certificate
    into a user. Nothing is written to the PKI directory; the caller keeps
    the pair (usually inside a kubeconfig).
    """
    group_list = [g for g in dict.fromkeys(groups) if g]
    for value in (user, *group_list):
        if not value or len(value) > _MAX_NAME_LENGTH:
            raise ValueError(f"client certificate names must have 1 to {_MAX_NAME_LENGTH} characters, "
                             f"got {value!r}")
    ca_cert, ca_key = _load_ca(pki)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g)]) for g in group_list]
        + [x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, user)])]
    )
    cert = (_leaf_builder(subject, key.public_key(), ca_cert, days)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


# --- files ---------------------------------------------------------------------------------------

def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that a reader sees the old file or the new one, never a part.

    The file has exactly `mode` from its first byte (a key is never readable
    by others, not even for an instant), whatever the umask.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def create_exclusively(path: Path, data: bytes, *, mode: int = 0o600) -> bool:
    """Write `path` complete and at once if it does not exist; False (and no change) when it does.

    Linking a finished temporary file into place fails if the name is taken,
    so two processes racing to create the file both end up reading the winner's.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load_cert_chain(ctx: ssl.SSLContext, cert: Path | str | bytes,
                     key: Path | str | bytes | None) -> None:
    if not isinstance(cert, bytes) and not isinstance(key, bytes):
        ctx.load_cert_chain(cert, key)
        return
    # ssl loads a certificate chain only from files: spell PEM out in a private directory.
    with tempfile.TemporaryDirectory(prefix="eventplane-tls-") as d:
        def as_file(value: Path | str | bytes | None, name: str) -> str | None:
            if not isinstance(value, bytes):
                return None if value is None else os.fspath(value)
            p = Path(d) / name
            atomic_write(p, value)
            return str(p)
        ctx.load_cert_chain(as_file(cert, "tls.crt"), as_file(key, "tls.key"))


# --- the CA --------------------------------------------------------------------------------------

def _ensure_ca(pki: Pki) -> tuple[x509.Certificate, CaKey]:
    have_cert, have_key = pki.ca_cert.exists(), pki.ca_key.exists()
    if have_cert or have_key:
        ca_cert, ca_key = _load_ca(pki)
        if ca_cert.not_valid_after_utc - _now() < RENEW_BEFORE:
            log.warning("the cluster CA %s expires on %s; every kubeconfig will need a new one",
                        pki.ca_cert, ca_cert.not_valid_after_utc.date())
        return ca_cert, ca_key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    # Key first: a ca.crt without its key is the state _load_ca refuses.
    atomic_write(pki.ca_key, _key_pem(key), mode=0o600)
    atomic_write(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    log.info("created the cluster CA in %s", pki.dir)
    return cert, key


def _load_ca(pki: Pki) -> tuple[x509.Certificate, CaKey]:
    if not pki.ca_cert.exists() or not pki.ca_key.exists():
        raise PkiError(f"{pki.dir} holds only one of ca.crt and ca.key; restore the other, or remove "
                       f"both to create a new CA (every kubeconfig and client certificate then needs re-issuing)")
    try:
        ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
        ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    except (ValueError, TypeError) as e:  # TypeError: the key is encrypted
        raise PkiError(f"the CA in {pki.dir} does not load: {e}") from e
    if not isinstance(ca_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"{pki.ca_key} is neither an EC nor an RSA key")
    if ca_key.public_key().public_bytes(*_SPKI) != ca_cert.public_key().public_bytes(*_SPKI):
        raise PkiError(f"{pki.ca_key} is not the key of {pki.ca_cert}")
    return ca_cert, ca_key


# --- the serving certificate ---------------------------------------------------------------------

def _ensure_server_cert(pki: Pki, ca_cert: x509.Certificate, ca_key: CaKey,
                        wanted: set[str | IpAddress]) -> None:
    reason = _why_reissue(pki, ca_cert, wanted)
    if reason is None:
        return
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME)])
    sans: list[x509.GeneralName] = [
        x509.IPAddress(h) if isinstance(h, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else x509.DNSName(h)
        for h in sorted(wanted, key=lambda h: (isinstance(h, str), str(h)))
    ]
    cert = (_leaf_builder(subject, key.public_key(), ca_cert, SERVER_DAYS)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    atomic_write(pki.server_key, _key_pem(key), mode=0o600)
    atomic_write(pki.server_cert, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    log.info("issued the serving certificate %s (%s)", pki.server_cert, reason)


def _why_reissue(pki: Pki, ca_cert: x509.Certificate, wanted: set[str | IpAddress]) -> str | None:
    """None when the serving certificate on disk is fit to keep, else why it is not."""
    if not pki.server_cert.exists() or not pki.server_key.exists():
        return "first start"
    try:
        cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
        key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    except (ValueError, TypeError):
        return "the files on disk do not load"
    if key.public_key().public_bytes(*_SPKI) != cert.public_key().public_bytes(*_SPKI):
        return "its key does not match"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (InvalidSignature, ValueError, TypeError):
        return "not issued by the current CA"
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return f"expires on {cert.not_valid_after_utc.date()}"
    try:
        present = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it has no subject alternative names"
    have = _san_set([*present.get_values_for_type(x509.DNSName),
                     *(str(ip) for ip in present.get_values_for_type(x509.IPAddress))])
    missing = wanted - have
    if missing:
        return "it does not cover " + ", ".join(sorted(str(m) for m in missing))
    return None


# --- building blocks -----------------------------------------------------------------------------

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _san_set(hosts: Iterable[str]) -> set[str | IpAddress]:
    """Hosts as they compare in a certificate: IPs parsed (so ::1 == 0:0::1), names lower-cased."""
    out: set[str | IpAddress] = set()
    for h in hosts:
        h = h.strip().strip("[]")  # "[::1]" as written in URLs
        if not h:
            continue
        try:
            out.add(ipaddress.ip_address(h))
        except ValueError:
            out.add(h.lower().rstrip("."))
    return out


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _leaf_builder(subject: x509.Name, public_key: ec.EllipticCurvePublicKey,
                  ca_cert: x509.Certificate, days: int) -> x509.CertificateBuilder:
    now = _now()
    try:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
            ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value)
    except x509.ExtensionNotFound:  # a CA made elsewhere without one
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())
    return (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            # A leaf never outlives its CA: verifiers would reject it from then on anyway.
            .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(aki, critical=False))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
