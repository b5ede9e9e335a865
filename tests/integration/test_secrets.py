"""Secret hygiene of a running worker: no secret left in its environment (/proc/<pid>/environ,
which is what a child process or anyone reading /proc sees), no core dumps (the key is in its
memory), URL credentials masked in every log line, and plain http to a remote API refused."""
import json
import resource
import subprocess

from awtest import API_KEY, TOOL_SECRET, WORKER_BIN, Worker

PREVIOUS_SECRET = "aw-test-previous-secret-9b0e44d2"
OPENAI_KEY = "aw-test-openai-fallback-71c3"


def core_limits(pid):
    """(soft, hard) of "Max core file size" in /proc/<pid>/limits, as strings."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                soft, hard = line[len("Max core file size"):].split()[:2]
                return soft, hard
    raise AssertionError("no core limit line")


def test_running_worker_has_no_secret_in_its_environment_and_dumps_no_core(worker):
    # The tool secrets are read (and must be scrubbed) whether or not an assistant has tools.
    w = worker("secrets", tool_secret=TOOL_SECRET,
               extra_env={"AW_TOOL_SECRET_PREVIOUS": PREVIOUS_SECRET, "OPENAI_API_KEY": OPENAI_KEY})
    with open(f"/proc/{w.proc.pid}/environ", "rb") as f:
        environ = f.read()
    for secret in (API_KEY, TOOL_SECRET, PREVIOUS_SECRET, OPENAI_KEY):
        assert secret.encode() not in environ, f"{secret} is still in /proc/<pid>/environ"
    assert b"AW_KAFKA_BROKERS=" in environ  # what is not secret stays
    # RLIMIT_CORE 0, hard limit included (AddressSanitizer alone lowers only the soft one);
    # the process is also made non-dumpable (tests/unit/test_proc_guard.c checks PR_GET_DUMPABLE).
    assert core_limits(w.proc.pid) == ("0", "0")


def test_allow_core_dumps_leaves_the_core_limit_alone(worker):
    hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
    w = worker("cores", extra_env={"AW_ALLOW_CORE_DUMPS": "1"})
    assert core_limits(w.proc.pid)[1] != "0" or hard == 0
    assert w.logged("worker.allow_core_dumps: core dumps are allowed and will contain the API key")
    with open(f"/proc/{w.proc.pid}/environ", "rb") as f:
        assert API_KEY.encode() not in f.read()  # the environment is scrubbed either way


def test_credentials_in_the_api_url_are_never_logged(worker, simulator):
    url = simulator.base_url.replace("http://", "http://aw-user:url-pass-4e1d@", 1)
    w = worker("urlcreds", api_base_url=url)
    starting = [ln for ln in w.lines if '"starting: ' in ln]
    assert starting and "http://***@127.0.0.1" in starting[0], starting
    assert not [ln for ln in w.lines if "url-pass-4e1d" in ln]


def test_plain_http_to_a_remote_api_is_refused_without_the_opt_in(ctx):
    # This test's worker configuration, with the API on a host that is not loopback.
    w = Worker(ctx.spec("http://aw-user:pw-9c2b@api.example.invalid/v1"), ctx.workdir, "insecure")
    w.config_path.write_text(json.dumps(w._config()))

    def run(*args, **env):
        return subprocess.run([str(WORKER_BIN), "run", "--config", str(w.config_path), *args],
                              env={**w._env(), **env}, capture_output=True, text=True, timeout=30)

    p = run()
    assert p.returncode == 2, p.stderr
    assert "api.allow_insecure_http" in p.stderr and "http://***@api.example.invalid/v1" in p.stderr
    assert "pw-9c2b" not in p.stderr

    p = run("--print-config", AW_API_ALLOW_INSECURE_HTTP="1")
    assert p.returncode == 0, p.stderr
    api = json.loads(p.stdout)["api"]
    assert api["allow_insecure_http"] is True and api["base_url"] == "http://***@api.example.invalid/v1"
    assert "pw-9c2b" not in p.stdout
