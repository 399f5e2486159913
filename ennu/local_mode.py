"""Local mode: the stand-in vendors' published identities and the local-only key, for `make up` and tests.

With no credentials configured, a connector that talks to a loopback stand-in (sandbox/) signs in with
these. They are published test values like those of vendors' public sandboxes: no secret, and never used
towards a real vendor (each connector refuses them for a base URL that is not loopback). The product keeps
them, not the sandbox, so that product code never imports development tooling; the sandbox imports them
from here to know whom to accept.
"""

from __future__ import annotations

import math
import random
import threading
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

# Epic FHIR (SMART Backend Services): the stand-in's one registered backend client.
EPIC_CLIENT_ID = "ennu-sandbox-client"
EPIC_KEY_ID = "ennu-sandbox-key"
# GA4's Admin API (user deletion): the stand-in's service account and property. Same key as Epic's.
GA4_SERVICE_ACCOUNT = "ennu-sandbox@ennu-sandbox.iam.gserviceaccount.com"
GA4_KEY_ID = "ennu-sandbox-ga4-key"
GA4_PROPERTY_ID = "123456789"
# The seed the local key is derived from: every process (stand-ins, flows, tests) derives the same key.
KEY_SEED = "ennu-sandbox-fhir-rs384-v1"


_WINDOW = 4096  # odd candidates sieved at once (about 11 primes among them at 1024 bits)


@lru_cache(maxsize=1)
def _sieve_primes(below: int = 1 << 16) -> list[int]:
    """The odd primes below `below` (Eratosthenes), to sieve a window of candidates before Miller-Rabin."""
    marks = bytearray([1]) * below
    marks[0:2] = b"\x00\x00"
    for n in range(2, math.isqrt(below) + 1):
        if marks[n]:
            marks[n * n :: n] = bytes(len(range(n * n, below, n)))
    return [n for n in range(3, below, 2) if marks[n]]


def _probable_prime(n: int) -> bool:
    """Miller-Rabin with fixed bases: deterministic, so only `getrandbits` decides which key comes out."""
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for base in (2, *_sieve_primes()[:23]):
        x = pow(base, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, rng: random.Random, e: int) -> int:
    """The first prime p of `bits` bits with p - 1 prime to e, in a sieved window from a random start:
    about 30 Miller-Rabin tests a prime instead of about 90 for candidates tried one by one."""
    while True:
        start = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        composite = bytearray(_WINDOW)  # composite[k]: start + 2k has a factor below 2^16
        for p in _sieve_primes():
            first = (-(start % p) * ((p + 1) // 2)) % p  # the k with start + 2k = 0 (mod p)
            composite[first::p] = b"\x01" * len(range(first, _WINDOW, p))
        for k in range(_WINDOW):
            candidate = start + 2 * k
            if composite[k] or candidate.bit_length() != bits:
                continue
            if (candidate - 1) % e and _probable_prime(candidate):
                return candidate


_KEY_LOCK = threading.Lock()  # push threads building their connectors at once derive it once, not each


def _local_key() -> RSAPrivateKey:
    with _KEY_LOCK:
        return _derived_key()


@lru_cache(maxsize=1)
def _derived_key() -> RSAPrivateKey:
    """A 2048-bit RSA key derived from a fixed seed, so every process (sandbox, flows, tests) agrees on it.

    It is a published test key like those of vendors' public sandboxes: no secret, never for a real
    vendor (the connector uses it only towards a loopback sandbox). Deriving it costs about 0.4 CPU-s, once
    a process.
    """
    from cryptography.hazmat.primitives.asymmetric import rsa

    rng = random.Random(KEY_SEED)
    e = 65537
    p = _prime(1024, rng, e)
    q = _prime(1024, rng, e)
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


def local_private_key_pem() -> str:
    """The local-only private key (PKCS#8 PEM): a connector's fallback towards a loopback stand-in."""
    from cryptography.hazmat.primitives import serialization

    return (
        _local_key()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def local_public_key_pem() -> str:
    """The public half the stand-ins' token endpoints verify client assertions with."""
    from cryptography.hazmat.primitives import serialization

    return (
        _local_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
