"""SMART backend-services auth: the client assertion, the token cache, and what the sandbox refuses.

The client is the stand-in's registered one, as the product knows it in local mode (`ennu.local_mode`)."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connectors.epic_fhir.errors import TOKEN_TABLE
from connectors.epic_fhir.smart_auth import (
    CLIENT_ASSERTION_TYPE,
    DEFAULT_SCOPE,
    SmartBackendAuth,
    SmartClient,
    client_assertion,
)
from connectors.http import AuthError, VendorHttp
from ennu.local_mode import EPIC_CLIENT_ID as SANDBOX_CLIENT_ID
from ennu.local_mode import EPIC_KEY_ID as SANDBOX_KEY_ID
from ennu.local_mode import local_private_key_pem as sandbox_private_key_pem
from ennu.local_mode import local_public_key_pem as sandbox_public_key_pem

TOKEN_URL = "https://fhir.example.org/oauth2/token"


def sandbox_client(key_pem: str | None = None, key_id: str = SANDBOX_KEY_ID) -> SmartClient:
    return SmartClient(SANDBOX_CLIENT_ID, key_id, SecretStr(key_pem or sandbox_private_key_pem()))


def other_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_the_client_assertion_verifies_with_the_public_key_and_has_the_smart_claims() -> None:
    now = time.time()
    first = client_assertion(sandbox_client(), TOKEN_URL, now=now)
    second = client_assertion(sandbox_client(), TOKEN_URL, now=now)
    header = jwt.get_unverified_header(first)
    assert header["alg"] == "RS384" and header["kid"] == SANDBOX_KEY_ID
    claims = jwt.decode(first, sandbox_public_key_pem(), algorithms=["RS384"], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == SANDBOX_CLIENT_ID
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - int(now) <= 300
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_the_sandbox_key_is_the_same_in_every_process() -> None:
    # derived from a fixed seed, so a sandbox started by `make up` accepts the flows' assertions
    assert sandbox_private_key_pem().startswith("-----BEGIN PRIVATE KEY-----")
    public = serialization.load_pem_public_key(sandbox_public_key_pem().encode())
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert public.public_numbers().n % 1_000_003 == 42572  # fingerprint of the seeded key (sieved search)


def test_threads_asking_for_the_key_at_once_derive_it_once() -> None:
    """Push threads build their connectors together in a new process: each used to derive the key
    (1.3 CPU-s each, holding the GIL), which held a worker's first batch for 8 s and more."""
    from ennu import local_mode

    local_mode._derived_key.cache_clear()
    with ThreadPoolExecutor(6) as pool:
        keys = list(pool.map(lambda _: local_mode.local_private_key_pem(), range(6)))
    assert len(set(keys)) == 1
    assert local_mode._derived_key.cache_info().misses == 1


def token_request(sandbox_url: str, assertion: str, scope: str = DEFAULT_SCOPE) -> requests.Response:
    return requests.post(
        f"{sandbox_url}/fhir/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scope,
        },
        timeout=10,
    )


def test_the_sandbox_token_endpoint_accepts_a_good_assertion_once(sandbox: Any, sandbox_url: str) -> None:
    token_url = f"{sandbox_url}/fhir/oauth2/token"
    assertion = client_assertion(sandbox_client(), token_url)
    granted = token_request(sandbox_url, assertion)
    assert granted.status_code == 200
    body = granted.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["scope"] == DEFAULT_SCOPE
    replayed = token_request(sandbox_url, assertion)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    "case",
    ["expired", "wrongly signed", "wrong audience", "unknown key id", "too long lived", "other issuer"],
)
def test_the_sandbox_refuses_a_bad_assertion(case: str, sandbox: Any, sandbox_url: str) -> None:
    token_url = f"{sandbox_url}/fhir/oauth2/token"
    now = time.time()
    claims: dict[str, Any] = {
        "iss": SANDBOX_CLIENT_ID,
        "sub": SANDBOX_CLIENT_ID,
        "aud": token_url,
        "jti": uuid.uuid4().hex,
        "exp": int(now) + 240,
    }
    key, kid = sandbox_private_key_pem(), SANDBOX_KEY_ID
    if case == "expired":
        claims["exp"] = int(now) - 10
    elif case == "wrongly signed":
        key = other_key_pem()
    elif case == "wrong audience":
        claims["aud"] = f"{sandbox_url}/fhir/r4"
    elif case == "unknown key id":
        kid = "another-key"
    elif case == "too long lived":
        claims["exp"] = int(now) + 3600
    elif case == "other issuer":
        claims["iss"] = claims["sub"] = "someone-else"
    assertion = jwt.encode(claims, key, algorithm="RS384", headers={"kid": kid})
    refused = token_request(sandbox_url, assertion)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"


def test_the_sandbox_refuses_scopes_it_does_not_offer(sandbox: Any, sandbox_url: str) -> None:
    assertion = client_assertion(sandbox_client(), f"{sandbox_url}/fhir/oauth2/token")
    refused = token_request(sandbox_url, assertion, scope="system/Patient.read system/Claim.write")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_the_token_url_is_discovered_and_the_token_cached_until_a_minute_before_expiry(
    sandbox: Any, sandbox_url: str
) -> None:
    base = f"{sandbox_url}/fhir/r4"
    clock = FakeClock()
    auth = SmartBackendAuth(VendorHttp("epic_fhir", base), base, sandbox_client(), clock=clock)
    first = auth.access_token()
    assert auth.access_token() == first
    clock.now += 3600 - 61
    assert auth.access_token() == first
    clock.now += 2  # 59 s left: a new token
    assert auth.access_token() != first
    paths = [r["path"] for r in sandbox.requests("fhir")]
    assert paths == [
        "/fhir/r4/.well-known/smart-configuration",
        "/fhir/oauth2/token",
        "/fhir/oauth2/token",
    ]


def test_a_refused_key_is_a_permanent_auth_error(sandbox: Any, sandbox_url: str) -> None:
    base = f"{sandbox_url}/fhir/r4"
    token_http = VendorHttp("epic_fhir", base, table=TOKEN_TABLE)
    auth = SmartBackendAuth(token_http, base, sandbox_client(other_key_pem()))
    with pytest.raises(AuthError) as refused:
        auth.access_token()
    assert refused.value.status == 401


def test_a_401_forgets_only_the_token_it_was_sent_with() -> None:
    auth = SmartBackendAuth(
        VendorHttp("epic_fhir", "http://127.0.0.1:9"), "http://127.0.0.1:9", sandbox_client()
    )
    auth._token, auth._expires_at = "newer", time.time() + 3600  # another thread fetched one meanwhile
    auth.forget("older")
    assert auth.access_token() == "newer"
    auth.forget("newer")
    assert auth._token is None
