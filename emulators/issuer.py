"""The local token issuer: what Google's token service and Identity Platform are to the
functions in Google Cloud, for the local stack and the tests.

It is an RSA signing key (kept in the stack's state directory, so tokens survive a
restart) and a small HTTP server publishing the public key, in Google's own format
(`/certs`: key id to PEM, what google-auth's verification reads) and as a JWKS
(`/.well-known/jwks.json`, for other tools). The functions trust it through the same
setting as Google's issuers (LEDGER_AUTH_ISSUERS), and refuse it in Google Cloud.

`python -m emulators token PRINCIPAL` mints a token for any principal's subject.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

AUDIENCE = "wallet-ledger-local"  # every local function's audience (in Google Cloud: each function's URL)
KEY_FILE = "issuer-key.pem"
CERTS_MAX_AGE_S = 300


def issuer_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def trusted_issuers(port: int) -> list[dict[str, Any]]:
    """The LEDGER_AUTH_ISSUERS entry that makes the functions trust this issuer."""
    return [{"issuer": issuer_url(port), "certs_url": f"{issuer_url(port)}/certs", "audiences": [AUDIENCE]}]


def ensure_key(directory: Path) -> Path:
    path = directory / KEY_FILE
    if not path.exists():
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
    return path


def _private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.load_pem_private_key(path.read_bytes(), password=None)


def key_id(path: Path) -> str:
    """A stable id for the key: the hash of its public part."""
    import hashlib

    return hashlib.sha256(_public_pem(path).encode()).hexdigest()[:16]


def _public_pem(path: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    public = _private_key(path).public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def certs(path: Path) -> dict[str, str]:
    return {key_id(path): _public_pem(path)}


def jwks(path: Path) -> dict[str, Any]:
    numbers = _private_key(path).public_key().public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {
        "keys": [
            {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": key_id(path), "n": b64(numbers.n), "e": b64(numbers.e)}
        ]
    }


def mint(
    key_path: Path,
    issuer: str,
    subject: str,
    audience: str = AUDIENCE,
    lifetime_s: int = 3600,
    claims: dict[str, Any] | None = None,
    now: float | None = None,
    kid: str | None = None,
) -> str:
    """A signed ID token, as Google's token service would issue one for `subject`."""
    from google.auth import crypt, jwt

    issued = int(now if now is not None else time.time())
    signer = crypt.RSASigner.from_string(key_path.read_text(), key_id=kid or key_id(key_path))
    payload = {"iss": issuer, "sub": subject, "aud": audience, "iat": issued, "exp": issued + lifetime_s}
    payload.update(claims or {})
    return jwt.encode(signer, payload).decode()


def serve(port: int, key_path: Path) -> None:
    bodies = {
        "/certs": json.dumps(certs(key_path)).encode(),
        "/.well-known/jwks.json": json.dumps(jwks(key_path)).encode(),
        "/health": b'{"ok":true}',
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = bodies.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", f"public, max-age={CERTS_MAX_AGE_S}")
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-dir", type=Path, required=True)
    arguments = parser.parse_args()
    serve(arguments.port, ensure_key(arguments.key_dir))
