"""``mutomo sweep --address`` as users run it (issue 26): a real head started with
``ray start --head`` under Ray's defaults (a token in ~/.ray/auth_token turns token
authentication on), joined without setting anything by hand; and addresses where no Ray answers
refused within seconds, naming them."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mutomo.errors import ConfigError
from mutomo.sweep.engine import check_address
from tests.unit.test_sweep import SIZE_ARGS, _config, _first_pid, _wait_for

RAY = Path(sys.executable).parent / "ray"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listener(reply: bytes | None) -> tuple[socket.socket, int]:
    """A TCP server on a free port that accepts and then says ``reply`` (or nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def serve() -> None:
        try:
            while True:
                conn, _ = server.accept()
                if reply is not None:
                    conn.sendall(reply)
        except OSError:
            return

    threading.Thread(target=serve, daemon=True).start()
    return server, int(server.getsockname()[1])


@pytest.mark.parametrize(
    "reply, said", [(None, "no answer within 1 s"), (b"SSH-2.0-OpenSSH_9.6\r\n", "not Ray (not gRPC)")]
)
def test_an_address_that_does_not_answer_as_ray_is_refused_naming_it(reply, said):
    """A port that accepts but never answers (Ray itself would wait ~40 s to minutes) or that
    answers as something else is refused after the timeout, naming the address."""
    server, port = _listener(reply)
    try:
        with pytest.raises(
            ConfigError, match=f"nothing answers at 127.0.0.1:{port} as a Ray cluster.*{re.escape(said)}"
        ):
            check_address(f"127.0.0.1:{port}", timeout_s=1.0)
    finally:
        server.close()


def _ray_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "HOME": str(home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}


@pytest.mark.slow  # ~70-100 s on 2 shared cores: `make test-slow`
@pytest.mark.skipif(not RAY.exists(), reason="the `ray` command is not installed beside this Python")
def test_sweep_joins_a_head_started_with_ray_start_and_token_auth(tmp_path):
    """`ray start --head --num-cpus 1` with a token in ~/.ray/auth_token (as after any earlier
    local Ray) runs with token authentication; `mutomo sweep --address` joins it without
    RAY_AUTH_MODE set by hand, runs two trials, survives a killed worker, and the head stops."""
    home = tmp_path / "home"
    home.mkdir()
    env = _ray_env(home)
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").exists()
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray_", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    log = open(tmp_path / "head.log", "w")  # noqa: SIM115 - kept open for the head's lifetime
    head = subprocess.Popen(
        [str(RAY), "start", "--head", "--num-cpus", "1", "--port", str(port), "--include-dashboard", "false"]
        + ["--disable-usage-stats", "--temp-dir", temp_dir, "--block"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                check_address(address, timeout_s=2.0)
                break
            except ConfigError:
                assert head.poll() is None, (tmp_path / "head.log").read_text()
                assert time.monotonic() < deadline, "the head did not start"
                time.sleep(0.5)
        assert "Token authentication is enabled" in (tmp_path / "head.log").read_text()
        config = _config(tmp_path, "starts = 2\njitter = 0.05\n")
        out = tmp_path / "out"
        cmd = [sys.executable, "-m", "mutomo.app.cli", "sweep", str(config), "--address", address]
        cmd += ["--output", str(out), *SIZE_ARGS]
        sweep = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        first = out / "trials" / "start_000"
        _wait_for(lambda: (first / "checkpoints" / "epoch_00004.pt").exists(), sweep, "start_000's 5th epoch")
        os.kill(_first_pid(first), signal.SIGKILL)
        output, _ = sweep.communicate(timeout=300)
        print(output)
        assert sweep.returncode == 0, output
        assert f"2 trials on Ray ({address})" in output and "InvalidAuthToken" not in output
        trials = json.loads((out / "trials.json").read_text())
        assert {n: t["status"] for n, t in trials.items()} == {"start_000": "done", "start_001": "done"}
        assert trials["start_000"]["attempts"] == 2
        assert (out / "landscape.json").exists()
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` drains and stops its head's processes
        try:
            head.wait(timeout=90)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)  # whatever of this head's session is left
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        print((tmp_path / "head.log").read_text()[-3000:])
    with pytest.raises(ConfigError, match=f"nothing answers at {address}"):
        check_address(address, timeout_s=2.0)  # the head is gone
