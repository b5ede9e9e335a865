"""Authenticated infrastructure (issue 12): the worker authenticates to Redis (ACL user and
password, AUTH on every connect) and to Kafka (SASL/SCRAM-SHA-256), reaches a TLS-only Redis
through a loopback stunnel (hiredis 0.14.1 has no TLS), and fails clearly with wrong credentials:
at start-up both are fatal (exit 1, a message naming the user); later, when a connection is made
again, they are retried.  Passwords come from the environment or
from files and are never logged.

The session's Redis requires AUTH (deploy/local/lib.sh), so every other test authenticates too;
the broker has a SASL_PLAINTEXT listener beside the PLAINTEXT one the suite's clients use."""
import json
import shutil
import subprocess

import pytest
import redis as redis_lib

from awtest import WORKER_BIN, Worker, assert_valid, lib_sh

SASL_PROPS = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-256"}


def unmanaged(ctx, simulator, name, **overrides) -> Worker:
    """A worker expected to fail: started outside the `worker` fixture (which demands a clean
    exit 0), stopped by the test."""
    w = Worker(ctx.spec(simulator.base_url, **overrides), ctx.workdir, name)
    return w.start()


def exits(w: Worker, timeout_s: float = 60) -> int:
    """Wait for the process to exit on its own; its exit code."""
    try:
        w.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{w.name} did not exit within {timeout_s}s:\n{w.tail()}")
    return w.stop()


def no_line_has(w: Worker, secret: str) -> None:
    leaked = [ln for ln in w.lines if secret in ln]
    assert not leaked, f"{w.name} logged a password: {leaked[0][:200]}"


# ---- Redis AUTH ------------------------------------------------------------------------------

def test_worker_with_the_redis_password_from_a_file_answers(ctx, worker, stack):
    # The password file lib.sh made (a mounted Kubernetes Secret in production).
    w = worker("file", redis_password=None,
               extra_env={"AW_REDIS_PASSWORD_FILE": str(stack.run_dir / "redis.password")})
    assert w.logged(f"redis connected to 127.0.0.1:{ctx.redis_port}", redis_user=ctx.redis_auth[0])
    req = ctx.ask("conv-redis-file", "How do I reset my password?")
    assert ctx.response_for(req["event_id"])["status"] == "completed"


def test_worker_with_a_wrong_redis_password_exits_at_start_naming_the_user_not_the_password(ctx, simulator):
    wrong = "wrong-redis-password-4b1e"
    w = unmanaged(ctx, simulator, "wrongpw", redis_password=wrong)
    assert exits(w) == 1
    assert w.sanitizer_report() is None
    # The start-up gives up on the refusal itself (not after waiting 30 s for Redis).
    refused = [e for e in w.events if e and e.get("level") == "error"
               and e["msg"].startswith("start-up: ") and "refused authentication" in e["msg"]]
    assert refused, w.tail()
    assert f'as user "{ctx.redis_auth[0]}"' in refused[0]["msg"] and "WRONGPASS" in refused[0]["msg"], refused
    assert w.count("worker ready") == 0
    no_line_has(w, wrong)


def test_worker_without_a_redis_password_exits_at_start_saying_one_is_needed(ctx, simulator):
    w = unmanaged(ctx, simulator, "nopw", redis_username=None, redis_password=None)
    assert exits(w) == 1
    assert w.sanitizer_report() is None
    assert [e for e in w.events if e and e.get("level") == "error" and e["msg"].startswith("start-up: ")
            and "requires authentication and no password is configured" in e["msg"]], w.tail()
    assert w.count("worker ready") == 0


def test_print_config_masks_the_redis_password_and_refuses_one_in_the_file(ctx, simulator):
    w = Worker(ctx.spec(simulator.base_url), ctx.workdir, "printcfg")
    w.config_path.write_text(json.dumps(w._config()))
    p = subprocess.run([str(WORKER_BIN), "run", "--config", str(w.config_path), "--print-config"],
                       env=w._env(), capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    redis_cfg = json.loads(p.stdout)["redis"]
    assert redis_cfg["password"] == "***" and redis_cfg["username"] == ctx.redis_auth[0]
    assert ctx.redis_auth[1] not in p.stdout + p.stderr

    cfg = w._config()
    cfg["redis"] = {"password": "in-the-file-1c7d"}
    w.config_path.write_text(json.dumps(cfg))
    p = subprocess.run([str(WORKER_BIN), "run", "--config", str(w.config_path)],
                       env=w._env(), capture_output=True, text=True, timeout=30)
    assert p.returncode == 2
    assert "redis.password" in p.stderr and "AW_REDIS_PASSWORD" in p.stderr
    assert "in-the-file-1c7d" not in p.stderr


# ---- Redis TLS through stunnel ----------------------------------------------------------------

@pytest.fixture(scope="module")
def stunnel():
    """stunnel4, installed (lib.sh's apt list) when missing; the test skips only if it cannot be."""
    if not shutil.which("stunnel4"):
        try:
            lib_sh("aw_install_system_deps", timeout_s=600)
        except Exception as e:  # noqa: BLE001 -- reported as the skip reason
            pytest.skip(f"stunnel4 is not installed and could not be: {e}")
        if not shutil.which("stunnel4"):
            pytest.skip("stunnel4 is not installed and apt-get did not install it")
    return shutil.which("stunnel4")


@pytest.fixture(scope="module")
def redis_tls(stack, redis_port, stunnel) -> int:
    """A TLS-only redis-server (AUTH and client certificates required) and the stunnel in front
    of it; the tunnel's plain loopback port."""
    lib_sh("aw_redis_tls_start", str(stack.run_dir), "redis-tls")
    lib_sh("aw_redis_tunnel_start", str(stack.run_dir), "redis-tunnel", "redis-tls")
    return int((stack.run_dir / "redis-tunnel" / "port").read_text())


def test_worker_reaches_a_tls_redis_through_the_stunnel_sidecar_with_auth(ctx, worker, stack, redis_tls):
    tls_port = int((stack.run_dir / "redis-tls" / "tls_port").read_text())
    w = worker("tls", redis_port=redis_tls)
    assert w.logged(f"redis connected to 127.0.0.1:{redis_tls}", redis_user=ctx.redis_auth[0])
    req = ctx.ask("conv-tls", "How do I reset my password?")
    resp = ctx.response_for(req["event_id"])
    assert resp["status"] == "completed", resp.obj
    # What the worker wrote is in the TLS server (read with its own TLS client, not the tunnel).
    tls = stack.run_dir / "redis-tls" / "tls"
    r = redis_lib.Redis(host="127.0.0.1", port=tls_port, username=ctx.redis_auth[0], password=ctx.redis_auth[1],
                        ssl=True, ssl_ca_certs=str(tls / "ca.crt"), ssl_certfile=str(tls / "client.crt"),
                        ssl_keyfile=str(tls / "client.key"), decode_responses=True)
    try:
        assert r.keys(f"{ctx.redis_prefix}:*"), "the worker's keys are in the TLS server"
    finally:
        r.close()
    # The TLS server has no plain port: nothing reaches it without the tunnel.
    with pytest.raises(redis_lib.exceptions.ConnectionError):
        redis_lib.Redis(host="127.0.0.1", port=tls_port, username=ctx.redis_auth[0],
                        password=ctx.redis_auth[1], socket_timeout=5).ping()


def test_the_tunnel_refuses_a_server_certificate_another_ca_signed(ctx, stack, redis_tls):
    rogue = stack.run_dir / "rogue-ca"
    lib_sh("aw_tls_ca", str(rogue))
    lib_sh("aw_redis_tunnel_start", str(stack.run_dir), "redis-tunnel-rogue", "redis-tls", str(rogue / "ca.crt"))
    port = int((stack.run_dir / "redis-tunnel-rogue" / "port").read_text())
    try:
        r = redis_lib.Redis(host="127.0.0.1", port=port, username=ctx.redis_auth[0], password=ctx.redis_auth[1],
                            socket_timeout=10)
        with pytest.raises(redis_lib.exceptions.ConnectionError):
            r.ping()
        log = (stack.run_dir / "redis-tunnel-rogue" / "redis-tunnel-rogue.log").read_text()
        assert "certificate verify failed" in log or "CERT: Verification error" in log, log[-2000:]
    finally:
        stack.stop("redis-tunnel-rogue")


# ---- Kafka SASL -------------------------------------------------------------------------------

@pytest.fixture
def sasl(stack, kafka) -> tuple[str, str, str]:
    """(bootstrap, user, password) of the broker's SASL_PLAINTEXT listener."""
    return stack.kafka_sasl()


def test_worker_on_a_sasl_listener_answers_with_credentials_from_the_environment(ctx, worker, sasl):
    bootstrap, user, password = sasl
    w = worker("sasl-env", brokers=bootstrap, kafka_properties=dict(SASL_PROPS),
               extra_env={"AW_KAFKA_SASL_USERNAME": user, "AW_KAFKA_SASL_PASSWORD": password})
    # Streamed: the consumer, the transactional producer and the deltas' producer all go
    # through the SASL listener.
    req = ctx.ask("conv-sasl-env", "How do I reset my password?", stream=True)
    resp = ctx.response_for(req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert ctx.deltas.wait_for(lambda ms: [m for m in ms if m.get("event_id") == req["event_id"]], 30,
                               "the deltas")
    no_line_has(w, password)


def test_worker_and_send_on_a_sasl_listener_with_the_password_from_a_file(ctx, worker, sasl, stack):
    bootstrap, user, password = sasl
    w = worker("sasl-file", brokers=bootstrap, kafka_properties=dict(SASL_PROPS),
               extra_env={"AW_KAFKA_SASL_USERNAME": user,
                          "AW_KAFKA_SASL_PASSWORD_FILE": str(stack.run_dir / "kafka" / "sasl.password")})
    # The CLI's clients (a producer, a consumer) authenticate the same way.
    p = subprocess.run([str(WORKER_BIN), "send", "--conversation", "conv-sasl-file", "--event-id", "evt-sasl-file",
                        "--config", str(w.config_path), "How do I reset my password?"],
                       env=w._env(), capture_output=True, text=True, timeout=90)
    assert p.returncode == 0, p.stderr
    resp = json.loads(p.stdout.splitlines()[-1])
    assert resp["event_id"] == "evt-sasl-file" and resp["status"] == "completed"
    assert_valid("response", resp)
    assert password not in p.stdout + p.stderr
    no_line_has(w, password)


def test_worker_with_a_wrong_sasl_password_exits_at_start_naming_the_user_not_the_password(ctx, simulator, sasl):
    bootstrap, user, _ = sasl
    wrong = "wrong-sasl-password-93d0"
    w = unmanaged(ctx, simulator, "sasl-wrong", brokers=bootstrap, kafka_properties=dict(SASL_PROPS),
                  extra_env={"AW_KAFKA_SASL_USERNAME": user, "AW_KAFKA_SASL_PASSWORD": wrong})
    assert exits(w) == 1
    assert w.sanitizer_report() is None
    refused = [e for e in w.events if e and e.get("level") == "error"
               and e["msg"].startswith("start-up: ") and "refused authentication" in e["msg"]]
    assert refused, w.tail()
    msg = refused[0]["msg"]
    assert f'SASL user "{user}"' in msg and "SCRAM-SHA-256" in msg and "invalid credentials" in msg, msg
    assert w.count("worker ready") == 0
    no_line_has(w, wrong)
