"""The ``fleetward`` exit codes, by error class (documented in the README and ``--help``)."""

from __future__ import annotations

import grpc

from fleetward.client.errors import FleetwardError

OK = 0
FAILURE = 1
"""Internal error, the action itself failed (``ACTION_EXECUTION_FAILED``), or unknown."""
USAGE = 2
"""Bad flags, INVALID_ARGUMENT, or a needed confirmation impossible (no TTY, no --yes)."""
UNAUTHENTICATED = 3
PERMISSION_DENIED = 4
NOT_FOUND = 5
CONFLICT = 6
"""FAILED_PRECONDITION (already in state, not rollbackable, superseded, ...),
ALREADY_EXISTS (request id reused) or ABORTED (request in progress)."""
UNAVAILABLE = 7
"""The service (or its policy service or database) is unreachable, overloaded or timed out."""
DECLINED = 8
"""The confirmation prompt was answered "no": nothing was executed."""
INTERRUPTED = 130
BROKEN_PIPE = 141
"""The output's reader went away (``| head -1``): 128 + SIGPIPE, what a shell reports for
any program a closed pipe ended; nothing more is printed."""

_BY_CODE = {
    grpc.StatusCode.INVALID_ARGUMENT: USAGE,
    grpc.StatusCode.OUT_OF_RANGE: USAGE,
    grpc.StatusCode.UNAUTHENTICATED: UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS: CONFLICT,
    grpc.StatusCode.FAILED_PRECONDITION: CONFLICT,
    grpc.StatusCode.ABORTED: CONFLICT,
    grpc.StatusCode.UNAVAILABLE: UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: UNAVAILABLE,
}

EPILOG = """exit codes:
  0  ok                          5  not found
  1  internal error / failed     6  conflict or failed precondition
     (can-i: denied)
  2  usage or invalid argument   7  unavailable, overloaded or timed out
  3  unauthenticated             8  declined at the confirmation prompt
  4  permission denied         130  interrupted
                               141  output closed by its reader (| head)
"""


def for_error(error: FleetwardError) -> int:
    """The exit code for ``error``."""
    return _BY_CODE.get(error.code, FAILURE)
