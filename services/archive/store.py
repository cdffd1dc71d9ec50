"""S3-compatible object store (minio client), blocking calls run in threads."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.commonconfig import COMPLIANCE, CopySource
from minio.error import MinioException, S3Error, ServerError
from minio.retention import Retention

from services.config import S3Settings
from services.errors import StorageUnavailable, StreamWardenError

# S3 error codes that retrying cannot fix.
_PERMANENT = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket",
              "NoSuchKey", "NoSuchVersion"}


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    last_modified: str  # ISO 8601


@dataclass(frozen=True)
class StoredObject:
    key: str
    version_id: str | None


def _client(settings: S3Settings) -> Minio:
    parts = urlsplit(settings.endpoint)
    timeout = urllib3.Timeout(connect=settings.timeout_s, read=settings.timeout_s)
    # No urllib3 retries: the spool drainer owns retry policy and backoff.
    http = urllib3.PoolManager(
        timeout=timeout,
        retries=False,
        # Uploads, archivers and stats run in several threads at once: keep their
        # connections (urllib3's default of one per host re-handshakes TLS each time).
        maxsize=16,
        cert_reqs="CERT_REQUIRED" if parts.scheme == "https" else "CERT_NONE",
        ca_certs=str(settings.ca_file) if settings.ca_file else None,
    )
    return Minio(
        parts.netloc,
        access_key=settings.access_key,
        secret_key=settings.secret_key,
        region=settings.region,
        secure=parts.scheme == "https",
        http_client=http,
    )


def _translate(error: Exception, what: str) -> StreamWardenError:
    if isinstance(error, S3Error):
        return StreamWardenError(f"{what}: {error.code}: {error.message}",
                                 retriable=error.code not in _PERMANENT)
    if isinstance(error, ServerError):
        return StorageUnavailable(f"{what}: server error {error.status_code}")
    return StorageUnavailable(f"{what}: {error}")


_S3_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)

# "This object has no retention" / "was never held": AWS and MinIO answer
# NoSuchObjectLockConfiguration (which minio-py already reads as none); SeaweedFS
# answers with these codes instead.
_NO_RETENTION = {"NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError"}
_NEVER_HELD = {"NoSuchObjectLockConfiguration", "NoSuchObjectLegalHold"}


def _sha256_header(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class ObjectStore:
    """The bucket that holds snapshots, segments and logs under Object Lock."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._client = _client(settings)

    async def ensure_bucket(self) -> None:
        """Create the bucket with Object Lock if missing; fail fast if S3 is down."""
        try:
            await asyncio.to_thread(self._ensure_bucket_sync)
        except _S3_ERRORS as error:
            raise StorageUnavailable(
                f"S3 endpoint {self.settings.endpoint} is unreachable or refused: "
                f"{_translate(error, 'bucket check')}"
            ) from None

    def _ensure_bucket_sync(self) -> None:
        if not self._client.bucket_exists(self.bucket):
            self._client.make_bucket(self.bucket, object_lock=self.settings.object_lock)

    def retention(self, days: int | None = None) -> Retention:
        until = datetime.now(UTC) + timedelta(days=days or self.settings.retention_days)
        return Retention(COMPLIANCE, until.replace(microsecond=0))

    async def put(self, key: str, data: bytes, content_type: str,
                  metadata: dict[str, Any] | None = None,
                  retention_days: int | None = None) -> StoredObject:
        """Store under COMPLIANCE retention: the bucket default, or ``retention_days``."""
        # Object Lock needs an integrity header on every upload; minio-py adds
        # Content-MD5 only over TLS, so send a SHA-256 checksum ourselves (plain-HTTP
        # endpoints such as an in-cluster MinIO refuse the upload otherwise).
        checksum = _sha256_header(data)
        headers = {**(metadata or {}), "x-amz-checksum-sha256": checksum,
                   "x-amz-sdk-checksum-algorithm": "SHA256"}
        try:
            result = await asyncio.to_thread(
                self._client.put_object, self.bucket, key, io.BytesIO(data), len(data),
                content_type=content_type, metadata=headers,
                retention=self.retention(retention_days) if self.settings.object_lock else None,
            )
        except _S3_ERRORS as error:
            raise _translate(error, f"upload of {key}") from None
        return StoredObject(key, result.version_id)

    async def exists(self, key: str) -> bool:
        try:
            await asyncio.to_thread(self._client.stat_object, self.bucket, key)
        except S3Error as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise _translate(error, f"stat of {key}") from None
        except _S3_ERRORS as error:
            raise _translate(error, f"stat of {key}") from None
        return True

    async def head(self, key: str) -> dict[str, str]:
        """Response headers of the current version (lock mode, retain-until, version id)."""
        try:
            stat = await asyncio.to_thread(self._client.stat_object, self.bucket, key)
        except _S3_ERRORS as error:
            raise _translate(error, f"stat of {key}") from None
        return {name.lower(): value for name, value in (stat.metadata or {}).items()}

    async def set_legal_hold(self, key: str, on: bool) -> None:
        """Legal hold keeps an object past its retention until a case is closed."""
        call = self._client.enable_object_legal_hold if on else \
            self._client.disable_object_legal_hold
        try:
            await asyncio.to_thread(call, self.bucket, key)
        except _S3_ERRORS as error:
            raise _translate(error, f"legal hold on {key}") from None

    async def legal_hold(self, key: str, version_id: str | None = None) -> bool:
        try:
            return bool(await asyncio.to_thread(self._client.is_object_legal_hold_enabled,
                                                self.bucket, key, version_id))
        except S3Error as error:
            if error.code in _NEVER_HELD:
                return False
            raise _translate(error, f"legal hold of {key}") from None
        except _S3_ERRORS as error:
            raise _translate(error, f"legal hold of {key}") from None

    async def retention_of(self, key: str, version_id: str | None = None) -> Retention | None:
        """The version's retention, or None when it has none."""
        try:
            found: Retention | None = await asyncio.to_thread(
                self._client.get_object_retention, self.bucket, key, version_id)
        except S3Error as error:
            if error.code in _NO_RETENTION:
                return None
            raise _translate(error, f"retention of {key}") from None
        except _S3_ERRORS as error:
            raise _translate(error, f"retention of {key}") from None
        return found

    async def copy(self, source: str, key: str) -> StoredObject:
        """Server-side copy that keeps the source's protection on the new version.

        The lock headers of a copy are not honoured everywhere (SeaweedFS ignores
        them and the bucket default, leaving the copy unprotected), so retention and
        legal hold are set on the new version afterwards and read back."""
        retention = await self.retention_of(source)
        if retention is None and self.settings.object_lock:
            retention = self.retention()
        held = await self.legal_hold(source)
        try:
            result = await asyncio.to_thread(
                self._client.copy_object, self.bucket, key, CopySource(self.bucket, source),
                retention=retention, legal_hold=held)
        except _S3_ERRORS as error:
            raise _translate(error, f"copy of {source} to {key}") from None
        copied = StoredObject(key, result.version_id)
        await self._protect(copied, retention, held)
        return copied

    async def _protect(self, stored: StoredObject, retention: Retention | None,
                       held: bool) -> None:
        """Apply retention and hold to exactly this version, then check they took."""
        calls: list[tuple[Any, ...]] = []
        if retention is not None:
            calls.append((self._client.set_object_retention, self.bucket, stored.key,
                          retention, stored.version_id))
        if held:
            calls.append((self._client.enable_object_legal_hold, self.bucket, stored.key,
                          stored.version_id))
        try:
            for call, *args in calls:
                await asyncio.to_thread(call, *args)
        except _S3_ERRORS as error:
            raise _translate(error, f"protecting {stored.key}") from None
        await self._check_protected(stored, retention, held)

    async def _check_protected(self, stored: StoredObject, retention: Retention | None,
                               held: bool) -> None:
        applied = await self.retention_of(stored.key, stored.version_id)
        if retention is not None and (
                applied is None or applied.mode != retention.mode
                or applied.retain_until_date is None
                or applied.retain_until_date < retention.retain_until_date):
            raise StreamWardenError(f"{stored.key}: retention not applied to the copy",
                                    retriable=False)
        if held and not await self.legal_hold(stored.key, stored.version_id):
            raise StreamWardenError(f"{stored.key}: legal hold not applied to the copy",
                                    retriable=False)

    def presign(self, key: str, expires_s: int) -> str:
        """A GET URL that works without credentials until it expires (signed locally)."""
        return self._client.presigned_get_object(self.bucket, key,
                                                 expires=timedelta(seconds=expires_s))

    async def delete_version(self, key: str, version_id: str) -> None:
        try:
            await asyncio.to_thread(self._client.remove_object, self.bucket, key,
                                    version_id=version_id)
        except _S3_ERRORS as error:
            raise _translate(error, f"delete of {key}") from None

    async def list_keys(self, prefix: str) -> list[str]:
        def names() -> list[str]:
            return [str(item.object_name)
                    for item in self._client.list_objects(self.bucket, prefix, recursive=True)]

        try:
            return await asyncio.to_thread(names)
        except _S3_ERRORS as error:
            raise _translate(error, f"listing {prefix}") from None

    async def list_objects(self, prefix: str) -> list[ListedObject]:
        """Current objects under ``prefix`` with their size and upload time."""
        def listing() -> list[ListedObject]:
            return [ListedObject(str(item.object_name), int(item.size or 0),
                                 item.last_modified.isoformat() if item.last_modified else "")
                    for item in self._client.list_objects(self.bucket, prefix, recursive=True)]

        try:
            return await asyncio.to_thread(listing)
        except _S3_ERRORS as error:
            raise _translate(error, f"listing {prefix}") from None

    async def list_versions(self, prefix: str) -> list[StoredObject]:
        """Every stored version under ``prefix`` (a key uploaded twice shows twice)."""
        def versions() -> list[StoredObject]:
            return [StoredObject(str(item.object_name), item.version_id)
                    for item in self._client.list_objects(self.bucket, prefix, recursive=True,
                                                          include_version=True)]

        try:
            return await asyncio.to_thread(versions)
        except _S3_ERRORS as error:
            raise _translate(error, f"listing versions of {prefix}") from None

    async def put_unlocked(self, key: str, data: bytes) -> None:
        """Overwrite without retention: only possible on a bucket without Object Lock."""
        checksum = _sha256_header(data)
        try:
            await asyncio.to_thread(self._client.put_object, self.bucket, key, io.BytesIO(data),
                                    len(data), metadata={"x-amz-checksum-sha256": checksum})
        except _S3_ERRORS as error:
            raise _translate(error, f"upload of {key}") from None

    async def remove(self, key: str) -> None:
        try:
            await asyncio.to_thread(self._client.remove_object, self.bucket, key)
        except _S3_ERRORS as error:
            raise _translate(error, f"delete of {key}") from None

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            response = self._client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        try:
            return await asyncio.to_thread(read)
        except _S3_ERRORS as error:
            raise _translate(error, f"download of {key}") from None
