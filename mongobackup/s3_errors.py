"""S3 failures as StorageError: a message naming the action, bucket and key, and whether a retry can heal it.

Only causes a retry can heal are transient: HTTP 500/502/503/504, throttling (SlowDown, Throttling, ...),
RequestTimeout, connection and read timeouts, a connection refused or closed mid-request. Everything else is
permanent, and so is anything this module does not recognise: retrying an error nobody understood costs
minutes (three backoffs) and never helps a bad credential, a missing bucket or a refused parameter.

botocore has retried transient errors on the wire already (standard mode, `s3.s3_client`) before one
reaches here; `transient` tells the task-level retry (Prefect) whether one more whole attempt is worth it.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from mongobackup.errors import StorageError, Unsupported

#: Error codes a retry can heal (AWS's throttling and transient codes, as botocore's standard mode lists them).
TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
#: botocore errors of the network that a later attempt may not meet.
TRANSIENT_NETWORK = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
    ResponseStreamingError,
    IncompleteReadError,
)
#: A store that does not implement the call (SeaweedFS answers NotImplemented, HTTP 501).
UNSUPPORTED_CODES = frozenset({"NotImplemented", "501", "XNotImplemented"})
NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})

_CREDENTIALS = "check the credentials (storage.credentials_block, or the default chain: environment, profile, role)"


def error_code(exc: ClientError) -> str:
    """The store's error code ("NoSuchBucket", "SlowDown", or the HTTP status for a bodiless reply)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_transient(exc: BaseException) -> bool:
    """Whether a botocore failure is one a retry can heal; False for anything not recognised."""
    if isinstance(exc, ClientError):
        return error_code(exc) in TRANSIENT_CODES or http_status(exc) in TRANSIENT_STATUS
    return isinstance(exc, TRANSIENT_NETWORK)


def storage_error(exc: BaseException, action: str, bucket: str, where: str) -> StorageError:
    """The StorageError for a botocore failure of `action` on `where` (`s3://bucket/key`)."""
    transient = is_transient(exc)
    if not isinstance(exc, ClientError):
        return StorageError(f"{action} {where}: {_explain_local(exc)}", transient=transient, code=type(exc).__name__)
    code = error_code(exc)
    reason = _explain(code, http_status(exc), action, bucket, where) or (
        exc.response.get("Error", {}).get("Message") or code
    )
    kind = Unsupported if code in UNSUPPORTED_CODES else StorageError
    return kind(f"{action} {where}: {reason} ({code})", transient=transient, code=code)


def _explain(code: str, status: int, action: str, bucket: str, where: str) -> str | None:
    """What an operator should know about a refusal, where S3's own message says too little."""
    if code == "NoSuchBucket" or (code == "404" and action == "check bucket"):
        return "bucket does not exist"
    if code == "InvalidAccessKeyId":
        return f"the access key id is unknown to the store: {_CREDENTIALS}"
    if code == "SignatureDoesNotMatch":
        return f"the secret key does not match the access key id: {_CREDENTIALS}"
    if code in ("AccessDenied", "403", "AllAccessDisabled") or status == 403:
        return (
            f"access denied (403 Forbidden) to {where}: either the credentials are not allowed this action "
            f"on bucket {bucket}, or the bucket policy refuses it; {_CREDENTIALS} and the policy of {bucket}"
        )
    return None


def _explain_local(exc: BaseException) -> str:
    """Failures raised before a request is sent (no credentials, a refused parameter) or on the network."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"no usable AWS credentials ({exc}): {_CREDENTIALS}"
    if isinstance(exc, ParamValidationError):
        return f"request refused before sending: {' '.join(str(exc).split())}"
    if isinstance(exc, BotoCoreError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
