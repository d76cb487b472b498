"""Bearer-token auth (contract §1): HS256 JWTs with `scope` and `department`.

Claims follow RFC 9068: `sub`, `exp` (required), `iat`, a space-separated
`scope`, and an optional `department` that confines a token to one
department's inbox, stream and subscriptions.
"""

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

import jwt
from fastapi import Request
from fastapi.security import HTTPBearer

from shared.errors import Forbidden, Unauthorized

SCOPES = (
    "feedback:read",
    "feedback:write",
    "expectations:read",
    "expectations:write",
    "commitments:read",
    "commitments:write",
    "notifications:read",
    "notifications:admin",
    "customers:read",
    "customers:write",
)
# What a token may do that changes nothing: `customer-focus token create` mints these unless told otherwise.
READ_SCOPES = tuple(scope for scope in SCOPES if scope.endswith(":read"))
ALGORITHM = "HS256"

_BEARER_DESCRIPTION = "HS256 JWT with `scope` (and optional `department`)."


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the token says."""

    sub: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    department: str | None = None
    expires_at: float = 0.0

    def require_department(self, department: str) -> None:
        """A department-bound token may act on its own department only."""
        if self.department is not None and self.department != department:
            raise Forbidden(f"This token is bound to department '{self.department}', not '{department}'.")


def mint_token(
    secret: str,
    *,
    sub: str,
    scopes: Iterable[str],
    department: str | None = None,
    ttl_seconds: int = 3600,
) -> str:
    """Sign a token the services accept."""
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
        "scope": " ".join(scopes),
    }
    if department is not None:
        claims["department"] = department
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class TokenVerifier:
    """Verifies tokens; remembers recently verified ones until they expire."""

    def __init__(self, secret: str, *, cache_size: int = 4096) -> None:
        self._secret = secret
        self._cache: dict[str, Principal] = {}
        self._cache_size = cache_size

    def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None and cached.expires_at > time.time():
            return cached
        try:
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The bearer token has expired.") from exc
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"The bearer token is invalid: {exc}.") from exc
        scope = claims.get("scope", "")
        department = claims.get("department")
        if (
            not isinstance(scope, str)
            or not isinstance(claims["sub"], str)
            or (department is not None and not isinstance(department, str))
        ):
            raise Unauthorized("The bearer token's claims are malformed.")
        principal = Principal(
            sub=claims["sub"],
            scopes=frozenset(scope.split()),
            department=department,
            expires_at=float(claims["exp"]),
        )
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = principal
        return principal


def bearer_principal(authorization: str, verifier: TokenVerifier) -> Principal:
    """The caller named by an `Authorization` header value, if it holds a valid bearer token (else 401)."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer token is required.", error=None)
    return verifier.verify(token.strip())


def authenticate(request: Request, scope: str, authorization: str | None = None) -> Principal:
    """The caller of `request` if its bearer token is valid and carries `scope`."""
    header = authorization if authorization is not None else request.headers.get("authorization", "")
    principal = bearer_principal(header, request.app.state.token_verifier)
    if scope not in principal.scopes:
        raise Forbidden(f"The token lacks the scope '{scope}'.", slug="insufficient-scope")
    return principal


class ScopeBearer(HTTPBearer):
    """A dependency that admits a valid bearer token carrying one scope, and is the `HTTPBearer` scheme itself.

    One dependency rather than a scope check on top of `HTTPBearer`: FastAPI resolves no sub-dependency (nor
    builds a credentials model) on each request, and the OpenAPI document names the same `HTTPBearer` scheme.
    """

    def __init__(self, scope: str) -> None:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        super().__init__(auto_error=False, scheme_name="HTTPBearer", description=_BEARER_DESCRIPTION)
        self.scope = scope

    # (This module has no `from __future__ import annotations`: FastAPI reads this signature's types from the
    # objects themselves, as an instance has no module globals to resolve names in.)
    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        return authenticate(request, self.scope)


def require_scope(scope: str) -> ScopeBearer:
    """A dependency that admits a valid token carrying `scope`."""
    return ScopeBearer(scope)
