"""The issuer's signing keys: RSA, one current, older ones still published until retired (rotation)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        return jwk | {"kid": self.kid, "use": "sig", "alg": "RS256"}


def new_key() -> SigningKey:
    return SigningKey(
        kid=secrets.token_hex(8), private=rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )


class KeyRing:
    """Signs with the newest key; publishes every key not yet retired, as a real issuer does during rotation."""

    def __init__(self) -> None:
        self._keys: list[SigningKey] = [new_key()]

    @property
    def current(self) -> SigningKey:
        return self._keys[-1]

    def rotate(self, *, retire_previous: bool = False) -> SigningKey:
        """Start signing with a new key; with `retire_previous` the old ones leave the JWKS at once."""
        key = new_key()
        self._keys = [key] if retire_previous else [*self._keys, key]
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.public_jwk() for k in self._keys]}

    def sign(self, claims: dict[str, Any]) -> str:
        key = self.current
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid})
