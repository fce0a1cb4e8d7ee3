"""`offload serve` as a user runs it: a real process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from offload import __version__
from offload.server import supervisor as serve
from tests.helpers import ADMIN_TOKEN, free_port, get_json, wait_for_port


def start_serve(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OFFLOAD_")}
    environ["OFFLOAD_ADMIN_TOKEN"] = ADMIN_TOKEN  # to read health's detail
    environ.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "offload", "serve", *map(str, args)],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process: subprocess.Popen, sig: int) -> tuple[int, str, str]:
    process.send_signal(sig)
    try:
        out, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"offload serve did not stop on signal {sig}: {err}")
    return process.returncode, out, err


@pytest.fixture
def embedded(tmp_path):
    """The embedded default, run in an empty folder with no configuration."""
    port = free_port()
    process = start_serve("--port", port, cwd=tmp_path)
    try:
        wait_for_port(port)
        yield process, port, tmp_path
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_embedded_default_serves_health_for_a_local_folder(embedded):
    _process, port, cwd = embedded
    status, body = get_json(f"http://127.0.0.1:{port}/_offload/health", token=ADMIN_TOKEN)
    assert status == 200
    assert body["status"] == "ok"
    assert body["version"] == __version__
    data_dir = (cwd / "offload-data").resolve()
    assert body["sites"] == {"default": {"storage": data_dir.as_uri(), "ok": True, "error": None}}


def test_embedded_default_prints_data_folder_urls_and_secret_file_but_not_the_secret(embedded):
    process, port, cwd = embedded
    code, out, err = stop(process, signal.SIGTERM)
    assert code == 0
    data_dir = (cwd / "offload-data").resolve()
    secret_file = data_dir / ".offload" / "webhook-secret"
    secret = secret_file.read_text().strip()
    assert len(secret) == 64
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert str(data_dir) in out
    assert str(secret_file) in out
    assert f"http://127.0.0.1:{port}/" in out
    assert f"http://127.0.0.1:{port}/_offload/health" in out
    assert secret not in out + err
    assert secret[-4:] in out  # shown masked, enough to tell two secrets apart


@pytest.fixture(params=["SIGINT handled", "SIGINT ignored"])
def started_as(request):
    """How the shell left SIGINT for this process: a script's background job has it ignored."""
    if request.param == "SIGINT handled":
        yield request.param
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by offload serve
    try:
        yield request.param
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_the_server_with_exit_code_130(started_as, tmp_path):
    port = free_port()
    process = start_serve("--port", port, cwd=tmp_path)
    try:
        wait_for_port(port)
        code, _out, err = stop(process, signal.SIGINT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert code == 130
    assert "Traceback" not in err


def test_the_secret_is_kept_across_restarts(tmp_path):
    port = free_port()
    first = start_serve("--port", port, cwd=tmp_path)
    wait_for_port(port)
    stop(first, signal.SIGTERM)
    secret_file = tmp_path / "offload-data" / ".offload" / "webhook-secret"
    secret = secret_file.read_text()
    second = start_serve("--port", port, cwd=tmp_path)
    wait_for_port(port)
    stop(second, signal.SIGTERM)
    assert secret_file.read_text() == secret


def test_host_port_and_data_dir_flags_are_honoured(tmp_path):
    port = free_port()
    process = start_serve(
        "--host", "127.0.0.1", "--port", port, "--data-dir", "media", cwd=tmp_path
    )
    wait_for_port(port)
    _status, body = get_json(f"http://127.0.0.1:{port}/_offload/health", token=ADMIN_TOKEN)
    stop(process, signal.SIGTERM)
    assert body["sites"]["default"]["storage"] == (tmp_path / "media").resolve().as_uri()


def test_a_port_in_use_is_one_clear_line_and_exit_code_1(embedded, tmp_path):
    _process, port, _cwd = embedded
    other = tmp_path / "other"
    other.mkdir()
    second = start_serve("--port", port, cwd=other)
    _out, err = second.communicate(timeout=30)
    assert second.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_unreachable_storage_is_reported_at_start_up_within_the_timeout(tmp_path):
    dead = free_port()  # nothing listens here
    config = tmp_path / "offload.toml"
    config.write_text(
        "storage_timeout = 2\n"
        "[sites.blog]\n"
        'storage = "s3://media-bucket/blog"\n'
        f'endpoint_url = "http://127.0.0.1:{dead}"\n'
    )
    port = free_port()
    env = {"AWS_ACCESS_KEY_ID": "a" * 20, "AWS_SECRET_ACCESS_KEY": "b" * 40}
    process = start_serve("--config", config, "--port", port, cwd=tmp_path, env=env)
    wait_for_port(port, timeout=30)  # the port opens only after the start-up check
    status, body = get_json(
        f"http://127.0.0.1:{port}/_offload/health", timeout=30, token=ADMIN_TOKEN
    )
    code, _out, err = stop(process, signal.SIGTERM)
    assert code == 0
    assert "site blog: s3://media-bucket/blog cannot be reached" in err
    assert status == 200
    assert body["status"] == "degraded"
    assert body["sites"]["blog"]["ok"] is False


def test_python_dash_m_offload_prints_the_version():
    result = subprocess.run(
        [sys.executable, "-m", "offload", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"offload {__version__}"


def test_two_workers_answer_on_one_port(tmp_path):
    port = free_port()
    process = start_serve("--port", port, "--workers", "2", cwd=tmp_path)
    try:
        wait_for_port(port)
        pids = set()
        for _ in range(200):  # each request is a new connection, spread by SO_REUSEPORT
            _status, body = get_json(f"http://127.0.0.1:{port}/_offload/health", token=ADMIN_TOKEN)
            pids.add(body["pid"])
            if len(pids) == 2:
                break
        assert len(pids) == 2
        assert process.pid not in pids  # the parent only supervises
    finally:
        code, out, _err = stop(process, signal.SIGTERM)
    assert code == 0
    assert "with 2 worker(s)" in out


def read_http_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Headers and the first bytes of the body, as they come."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection before the headers"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_lets_a_download_in_flight_finish(tmp_path, workers):
    port = free_port()
    data = tmp_path / "offload-data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(32 * 1024 * 1024))
    process = start_serve("--port", port, "--workers", workers, cwd=tmp_path)
    wait_for_port(port)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head, received = read_http_response(sock)
        assert head.startswith(b"HTTP/1.1 200")
        process.send_signal(signal.SIGTERM)  # mid-transfer: most of the body is still to come
        time.sleep(0.5)
        total = len(received)
        while chunk := sock.recv(1024 * 1024):
            total += len(chunk)
    _out, err = process.communicate(timeout=30)  # it stops by itself once the body is sent
    assert total == 32 * 1024 * 1024
    assert process.returncode == 0, err


def test_access_log_is_off_by_default_and_on_with_the_setting(tmp_path):
    port = free_port()
    quiet = start_serve("--port", port, cwd=tmp_path)
    wait_for_port(port)
    get_json(f"http://127.0.0.1:{port}/_offload/health")
    _code, _out, quiet_err = stop(quiet, signal.SIGTERM)
    loud = start_serve("--port", port, cwd=tmp_path, env={"OFFLOAD_ACCESS_LOG": "true"})
    wait_for_port(port)
    get_json(f"http://127.0.0.1:{port}/_offload/health")
    _code, _out, loud_err = stop(loud, signal.SIGTERM)
    assert "GET /_offload/health" not in quiet_err
    assert "GET /_offload/health" in loud_err


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_the_event_loop_setting_picks_the_loop_the_server_runs_on(tmp_path, choice):
    port = free_port()
    process = start_serve("--port", port, cwd=tmp_path, env={"OFFLOAD_EVENT_LOOP": choice})
    wait_for_port(port)
    status, _body = get_json(f"http://127.0.0.1:{port}/_offload/health")
    _code, out, _err = stop(process, signal.SIGTERM)
    assert status == 200
    assert f"event loop: {choice}" in out


def test_loop_factory_auto_prefers_uvloop_and_asyncio_means_the_default():
    import uvloop

    assert serve.loop_factory("auto") is uvloop.new_event_loop
    assert serve.loop_factory("uvloop") is uvloop.new_event_loop
    assert serve.loop_factory("asyncio") is None


def test_malloc_arenas_are_left_alone_when_the_operator_set_them(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert serve.limit_malloc_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_arenas_are_capped_on_linux(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert serve.limit_malloc_arenas() is True


def _scrape(port: int) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], str]:
    """Every sample of one scrape, and the pid of the worker that answered it."""
    url = f"http://127.0.0.1:{port}/_offload/metrics"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    [pid] = [dict(labels)["pid"] for name, labels in samples if name == "offload_worker_info"]
    return samples, pid


def _get(port: int, path: str) -> None:
    url = f"http://127.0.0.1:{port}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()


def test_one_scrape_reports_the_totals_of_both_workers(tmp_path):
    data = tmp_path / "offload-data"
    data.mkdir()
    (data / "photo.jpg").write_bytes(b"x" * 1000)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    port = free_port()
    process = start_serve(
        "--port", port, "--workers", "2", cwd=tmp_path, env={"TMPDIR": str(temporary)}
    )
    try:
        wait_for_port(port)
        for _ in range(100):  # a new connection each, spread over the workers by SO_REUSEPORT
            _get(port, "/photo.jpg")
        answered: dict[str, float] = {}
        deadline = time.monotonic() + 30  # each worker publishes within PUBLISH_SECONDS
        while len(answered) < 2 or set(answered.values()) != {100}:
            assert time.monotonic() < deadline, f"scrapes by worker: {answered}"
            samples, pid = _scrape(port)
            answered[pid] = samples[
                ("offload_requests_total", frozenset({("site", "default"), ("status", "200")}))
            ]
            time.sleep(0.05)
        assert str(process.pid) not in answered  # the parent only supervises
        assert samples[("offload_bytes_sent_total", frozenset({("site", "default")}))] == 100_000
        assert samples[("offload_request_seconds_count", frozenset())] == 100
        [folder] = temporary.glob("offload-metrics-*")  # private, set up by the supervisor
        assert {path.name.split("_")[0] for path in folder.iterdir()} >= {"counter", "histogram"}
    finally:
        code, _out, err = stop(process, signal.SIGTERM)
    assert code == 0, err
    assert list(temporary.iterdir()) == []  # the private folder is gone with the server


def test_an_operators_multiprocess_folder_is_used_emptied_of_old_runs_and_kept(tmp_path):
    folder = tmp_path / "prometheus"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"from an earlier run")
    (folder / "notes.txt").write_text("not prometheus_client's")
    (tmp_path / "offload-data").mkdir()
    (tmp_path / "offload-data" / "a.txt").write_text("a")
    port = free_port()
    process = start_serve(
        "--port",
        port,
        "--workers",
        "2",
        cwd=tmp_path,
        env={"PROMETHEUS_MULTIPROC_DIR": str(folder)},
    )
    try:
        wait_for_port(port)
        _get(port, "/a.txt")
        deadline = time.monotonic() + 30
        while True:
            samples, _pid = _scrape(port)
            if (
                samples.get(
                    ("offload_requests_total", frozenset({("site", "default"), ("status", "200")}))
                )
                == 1
            ):
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        code, _out, err = stop(process, signal.SIGTERM)
    assert code == 0, err
    names = {path.name for path in folder.iterdir()}
    assert "counter_999999.db" not in names
    assert "notes.txt" in names
    assert any(name.startswith("counter_") for name in names)


def test_a_multiprocess_folder_that_is_not_a_folder_is_one_clear_line(tmp_path):
    port = free_port()
    process = start_serve(
        "--port", port, cwd=tmp_path, env={"PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "nowhere")}
    )
    _out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert "PROMETHEUS_MULTIPROC_DIR" in err
    assert "is not a folder" in err
    assert "Traceback" not in err


def test_one_worker_counts_in_memory_and_a_scrape_shows_its_requests_at_once(tmp_path):
    (tmp_path / "offload-data").mkdir()
    (tmp_path / "offload-data" / "a.txt").write_text("a")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    port = free_port()
    process = start_serve("--port", port, cwd=tmp_path, env={"TMPDIR": str(temporary)})
    try:
        wait_for_port(port)
        for _ in range(3):
            _get(port, "/a.txt")
        samples, pid = _scrape(port)
    finally:
        code, _out, err = stop(process, signal.SIGTERM)
    assert code == 0, err
    assert pid == str(process.pid)
    key = ("offload_requests_total", frozenset({("site", "default"), ("status", "200")}))
    assert samples[key] == 3
    assert list(temporary.iterdir()) == []  # no multiprocess folder for one process
