"""Presigned S3 URLs at the cost of their signature alone.

botocore's `generate_presigned_url` resolves the endpoint through its rules engine, runs its
event hooks and parses the URL it built several times over, for every URL: 55-90 times the CPU
of the local backend's HMAC (measured side by side; even its bare SigV4 signer is 17-37 times).
`/presign` takes up to 200,000 ids, so on S3 one such request held an API process for minutes,
past any proxy's origin timeout. The bucket's base URL and signing region do not change between
URLs: they are taken once from one URL botocore made, and each URL is then signed here, with the
day's signing key derived once. The URLs are byte for byte the ones botocore makes
(tests/storage/test_s3_presign.py compares them)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

# Any valid key: only the URL around it is kept.
_PROBE_KEY = "presign-probe"
_METHODS = {"get_object": "GET", "put_object": "PUT"}
ALGORITHM = "AWS4-HMAC-SHA256"
# A presigned URL cannot know the body it will carry.
UNSIGNED = "UNSIGNED-PAYLOAD"


@dataclass(frozen=True)
class BucketUrl:
    """Where the bucket's objects are (path or virtual-host style) and the region to sign for."""

    base: str
    region: str

    @classmethod
    async def resolve(cls, client: Any, bucket: str) -> BucketUrl:
        url: str = await client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": _PROBE_KEY}, ExpiresIn=60
        )
        address, _, query = url.partition("?")
        credential = parse_qs(query)["X-Amz-Credential"][0]  # key id/date/region/s3/aws4_request
        region = credential.split("/")[-3]
        return cls(address.removesuffix(f"/{_PROBE_KEY}"), region)


class S3Presigner:
    """Signs URLs for one bucket (AWS Signature Version 4, query-string form, as documented at
    https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html);
    `credentials` gives the current (refreshed) credentials."""

    def __init__(self, bucket_url: BucketUrl, credentials: Callable[[], Awaitable[Any]]) -> None:
        self.bucket_url = bucket_url
        self._credentials = credentials
        self._host = _signed_host(bucket_url.base)
        self._path = urlsplit(bucket_url.base).path
        # The key derived from the secret changes once a day (and with the credentials).
        self._signing_keys: dict[tuple[str, str], bytes] = {}

    async def presign(
        self, operation: str, key: str, ttl_seconds: int, *, now: datetime | None = None
    ) -> str:
        credentials = await self._credentials()
        moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = moment[:8]
        scope = f"{day}/{self.bucket_url.region}/s3/aws4_request"
        params = {
            "X-Amz-Algorithm": ALGORITHM,
            "X-Amz-Credential": f"{credentials.access_key}/{scope}",
            "X-Amz-Date": moment,
            "X-Amz-Expires": str(ttl_seconds),
            "X-Amz-SignedHeaders": "host",
        }
        if credentials.token:
            params["X-Amz-Security-Token"] = credentials.token
        query = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
        path = f"{self._path}/{quote(key, safe='/~')}"
        canonical = f"{_METHODS[operation]}\n{path}\n{query}\nhost:{self._host}\n\nhost\n{UNSIGNED}"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"{ALGORITHM}\n{moment}\n{scope}\n{digest}"
        signing_key = self._signing_key(credentials.secret_key, day)
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        return f"{self.bucket_url.base}/{quote(key, safe='/~')}?{query}&X-Amz-Signature={signature}"

    def _signing_key(self, secret: str, day: str) -> bytes:
        found = self._signing_keys.get((secret, day))
        if found is None:
            found = f"AWS4{secret}".encode()
            for part in (day, self.bucket_url.region, "s3", "aws4_request"):
                found = hmac.new(found, part.encode(), hashlib.sha256).digest()
            self._signing_keys = {(secret, day): found}  # yesterday's key is no use any more
        return found


def _encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _signed_host(url: str) -> str:
    """The Host header a client sends to `url`: no port when it is the scheme's default."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return host if parts.port in (None, default) else f"{host}:{parts.port}"
