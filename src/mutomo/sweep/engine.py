"""The trials of a sweep as Ray tasks (https://docs.ray.io): on this machine by default, or on
an existing Ray cluster.

Each trial is one task of one CPU (torch with one thread). A task whose worker process dies
(killed, out of memory, a lost node) is rerun by Ray up to ``retries`` times, and resumes from
the trial's checkpoints (:mod:`mutomo.sweep.trial`), which must therefore lie on a filesystem
every worker sees: on one machine they do; on a cluster, put the sweep's folder on shared
storage. A trial that raises an error is not rerun (the error would repeat): it is reported
with its error and the other trials go on. A trial already done (its ``result.json``) is read
back without submitting it, so rerunning a sweep finishes only what is missing.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mutomo.config.schema import RunConfig
from mutomo.errors import ConfigError
from mutomo.sweep.plan import SweepPlan, Trial
from mutomo.sweep.trial import run_trial

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
"""A gRPC client's first bytes (RFC 9113, 3.4): the connection preface and an empty SETTINGS frame."""


def _answers_grpc(host: str, port: int, timeout_s: float) -> str | None:
    """``None`` if a gRPC server (Ray's GCS or Ray Client server) answers at ``host:port``
    within ``timeout_s``, else what went wrong: a gRPC server's first frame is SETTINGS (type
    4). Ray itself waits tens of seconds, or minutes, on a port that accepts but never answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            sock.sendall(HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    return "it closed the connection without answering as Ray does"
                head += chunk
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)
    if head[3] != 4:
        return "something answers, but not Ray (not gRPC)"
    return None


def check_address(address: str, timeout_s: float = 5.0) -> None:
    """Refuse, within ``timeout_s`` seconds or so, a cluster address that is malformed or at which
    no Ray answers, before any trial starts (``auto``: the cluster Ray finds itself, checked when
    connecting)."""
    if address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address: {address!r} is not HOST:PORT, ray://HOST:PORT or auto")
    problem = _answers_grpc(host, int(port), timeout_s)
    if problem is not None:
        raise ConfigError(
            f"--address: nothing answers at {address} as a Ray cluster ({problem}); start a cluster there with "
            "`ray start --head`, or leave --address out to run on this machine"
        )


AUTH_HELP = (
    "if the cluster uses token authentication (what `ray start --head` turns on when a token exists), give this "
    "machine the head's token: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> (or the token in ~/.ray/auth_token; "
    "`ray get-auth-token` on the head prints it)"
)
"""What to set to join a cluster that asks for a token, in one line."""


def use_token_if_available() -> bool:
    """Turn on Ray's token authentication for this process when ``RAY_AUTH_MODE`` is unset and a
    token is available (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), as
    ``ray start`` does: ``ray.init(address=...)`` never does it itself, so that joining a cluster
    that ``ray start --head`` started with token authentication fails with ``InvalidAuthToken``.
    A client that sends a token also joins a cluster without authentication. Returns whether
    token authentication is on. Uses Ray's own token loader (a private module of recent Ray, 2.60 here;
    with an older Ray, nothing is done)."""
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # Ray before token authentication
        return False
    return bool(maybe_enable_token_auth_if_token_available(warn_if_disabled=False))


def start_ray(address: str | None, workers: int | None) -> bool:
    """Connect to the cluster at ``address``, or start a local Ray with ``workers`` CPUs (default
    all). Returns whether a local instance was started (to be shut down after the sweep)."""
    import ray

    if ray.is_initialized():
        return False
    if address is None:
        ray.init(
            num_cpus=workers or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
        return True
    check_address(address)
    token = "this machine sends its token" if use_token_if_available() else "this machine has no token"
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"--address: cannot join the Ray cluster at {address} ({exc}; {token}); {AUTH_HELP}"
        ) from None
    return False


def _failure(exc: BaseException) -> str:
    """What went wrong in a trial, in one line: the trial's own error, not Ray's wrapping."""
    import ray.exceptions

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = exc.cause
        return f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).splitlines()[0]
    if isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.NodeDiedError):
        return f"its worker died on every attempt ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"


def run_trials(
    config: RunConfig,
    plan: SweepPlan,
    trials: list[Trial],
    folder: Path,
    overrides: dict[str, int] | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Run ``trials`` as Ray tasks (Ray must be started, :func:`start_ray`); returns every
    trial's result by name: its ``result.json``, or ``{"trial", "status": "failed", "error"}``."""
    import ray

    results: dict[str, dict[str, Any]] = {}
    pending: dict[Any, Trial] = {}
    task = ray.remote(num_cpus=1, max_retries=plan.retries, retry_exceptions=False)(run_trial)
    config_ref = ray.put(config)
    for t in trials:
        trial_dir = folder / "trials" / t.name
        if (trial_dir / "result.json").exists():
            results[t.name] = run_trial(config, plan, t, str(trial_dir), overrides)
            continue
        pending[task.remote(config_ref, plan, t, str(trial_dir.resolve()), overrides, 1)] = t
    if len(results):
        report(f"{len(results)} of {len(trials)} trials were done before; {len(pending)} to run")
    t0 = time.perf_counter()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        t = pending.pop(ready[0])
        try:
            results[t.name] = ray.get(ready[0])
            r = results[t.name]
            again = f", attempt {r['attempts']}" if r.get("attempts", 1) > 1 else ""
            report(f"[{len(results)}/{len(trials)}] {t.name} done ({r['seconds']:.0f} s{again})")
        except Exception as exc:  # a failed trial is reported and does not take the sweep down
            results[t.name] = {"trial": t.as_json(), "status": "failed", "error": _failure(exc)}
            report(f"[{len(results)}/{len(trials)}] {t.name} FAILED: {results[t.name]['error']}")
    if trials:
        report(f"trials finished in {time.perf_counter() - t0:.0f} s")
    return {t.name: results[t.name] for t in trials}
