"""Deploy files of rendered projects pass their linters, schemas and security scanners.

Every variant is rendered once per session from the work tree (uncommitted changes
included, so a local run tests what is about to be committed; CI runs on a clean clone).
The tools come from the `deploy-checks` dependency group (`uv sync --group deploy-checks`)
and `kubectl` (or `kustomize`) from the machine; a missing tool fails the run, it is never
skipped.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml
from copier.errors import DirtyLocalWarning

from conftest import BOOTED_VARIANTS, SUPPORTED_VARIANTS, repo_tool

REPO_ROOT = Path(__file__).resolve().parents[1]


# Every value of every question, and every pair of them: the booted covering set. (Checking
# all valid combinations would multiply checkov and kustomize runs for no new pair.)
VARIANTS: dict[str, dict[str, Any]] = {name: SUPPORTED_VARIANTS[name] for name in BOOTED_VARIANTS}
KUBERNETES_VARIANTS = [name for name in VARIANTS if name.startswith("kubernetes-")]
OVERLAYS = ("staging", "production")
SLUG = "my-service"
APP_UID = 10001
CONTAINER_TMP = "/tmp"  # noqa: S108 - the writable path inside the container, not a temp file

# The oldest and the newest Kubernetes minor that kubernetes-validate bundles and that
# the manifests support.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")

# The only checkov checks that may be skipped, each inline in the manifest with a reason.
ALLOWED_CHECKOV_SKIPS = {
    "CKV_K8S_35",  # settings come from environment variables (pydantic-settings)
    "CKV_K8S_43",  # the digest is pinned per overlay with kustomize `images:`
    "CKV_DOCKER_7",  # stages start from the PYTHON_IMAGE argument; its default is pinned
}

# Prometheus's templates in alert annotations (`{{ $labels.route }}`, `{{ $value }}`) and
# Grafana's legend templates (`{{route}}`): not Jinja residue.
MONITORING_TEMPLATE = re.compile(r"\{\{ \$(?:labels|value)\b[^}]*\}\}|\{\{[a-z_]+\}\}")
MONITORING_KINDS = ("ServiceMonitor", "PrometheusRule")

PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


# ----------------------------------------------------------------------------- helpers
def promtool() -> str:
    """Debian's `prometheus` package provides it (.ci/run installs it); never skipped."""
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is not installed: apt-get install prometheus")
    return found


def check_rules(path: Path) -> None:
    result = run(promtool(), "check", "rules", str(path))
    assert_clean(result)
    assert "SUCCESS" in result.stdout, result.stdout


def kustomize_command() -> list[str]:
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    pytest.fail("neither kubectl nor kustomize is installed")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args}\n{result.stdout}\n{result.stderr}"


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def build_overlay(project: Path, overlay: str) -> str:
    result = run(*kustomize_command(), str(project / "deploy" / "overlays" / overlay))
    assert_clean(result)
    return result.stdout


def manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deploy-variants")
    projects: dict[str, Path] = {}
    with warnings.catch_warnings():
        # Rendering the work tree with uncommitted changes is the point of a local run.
        warnings.simplefilter("ignore", DirtyLocalWarning)
        for name, data in VARIANTS.items():
            destination = root / name
            copier.run_copy(
                src_path=str(REPO_ROOT),
                dst_path=str(destination),
                data=data,
                defaults=True,
                unsafe=False,
                quiet=True,
                vcs_ref="HEAD",  # the tree under test, not the newest release tag
            )
            projects[name] = destination
    # The documented first step of a Kubernetes deployment: secrets.env from its example.
    for name in KUBERNETES_VARIANTS:
        for overlay in OVERLAYS:
            directory = projects[name] / "deploy" / "overlays" / overlay
            shutil.copyfile(directory / "secrets.env.example", directory / "secrets.env")
    return projects


@pytest.fixture(scope="session")
def built_overlays(rendered: dict[str, Path]) -> dict[tuple[str, str], str]:
    return {
        (name, overlay): build_overlay(rendered[name], overlay)
        for name in KUBERNETES_VARIANTS
        for overlay in OVERLAYS
    }


def workflow_files(project: Path) -> list[Path]:
    return sorted((project / ".github" / "workflows").glob("*.y*ml"))


def check_schema(schema: str, files: list[Path]) -> dict[str, list[str]]:
    """check-jsonschema's errors for each file (one run for many files: it is slow to start)."""
    result = run(
        repo_tool("check-jsonschema"),
        "--builtin-schema",
        schema,
        "--output-format",
        "json",
        *map(str, files),
    )
    report = json.loads(result.stdout)
    assert not report.get("parse_errors"), report["parse_errors"]
    errors: dict[str, list[str]] = {str(path): [] for path in files}
    for error in report["errors"]:
        errors[error["filename"]].append(f"{error['path']}: {error['message']}")
    assert (result.returncode == 0) == (report["status"] == "ok"), result.stderr
    return errors


@pytest.fixture(scope="session")
def schema_errors(rendered: dict[str, Path]) -> dict[str, list[str]]:
    errors = check_schema(
        "vendor.compose-spec", [project / "compose.yaml" for project in rendered.values()]
    )
    errors |= check_schema(
        "vendor.github-workflows",
        [path for project in rendered.values() for path in workflow_files(project)],
    )
    return errors


@pytest.fixture(scope="session")
def kubernetes_validation(
    built_overlays: dict[tuple[str, str], str], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, str], list[str]]:
    """kubernetes-validate --strict of every built overlay, one run per Kubernetes version;
    maps (version, variant, overlay) to the lines that report a problem."""
    directory = tmp_path_factory.mktemp("built-overlays")
    files: dict[tuple[str, str], Path] = {}
    for (variant, overlay), text in built_overlays.items():
        files[variant, overlay] = directory / f"{variant}-{overlay}.yaml"
        files[variant, overlay].write_text(text, encoding="utf-8")
    outcome: dict[tuple[str, str, str], list[str]] = {}
    for version in KUBERNETES_VERSIONS:
        result = run(
            repo_tool("kubernetes-validate"),
            "--strict",
            "--kubernetes-version",
            version,
            *map(str, files.values()),
        )
        lines = (result.stdout + result.stderr).splitlines()
        passed = [line for line in lines if " passed for resource " in line]
        problems = [line for line in lines if line.startswith(("ERROR", "WARN"))]
        assert passed, result.stdout + result.stderr
        assert (result.returncode == 0) == (not problems), result.stdout + result.stderr
        for (variant, overlay), path in files.items():
            outcome[version, variant, overlay] = [line for line in problems if str(path) in line]
    return outcome


@pytest.fixture(scope="session")
def checkov_results(
    rendered: dict[str, Path],
    built_overlays: dict[tuple[str, str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> list[dict[str, Any]]:
    """One checkov run over every rendered project and every built overlay (it is slow
    to start, so it runs once); tests pick their own files out of the report."""
    scan_root = tmp_path_factory.mktemp("checkov")
    for name, project in rendered.items():
        # The Python sources are not checkov's business; leaving them out halves its time.
        shutil.copytree(project, scan_root / name, ignore=shutil.ignore_patterns("src", "tests"))
    for (name, overlay), text in built_overlays.items():
        (scan_root / name / f"built-{overlay}.yaml").write_text(text, encoding="utf-8")
    result = run(
        repo_tool("checkov"),
        "--directory",
        str(scan_root),
        "--framework",
        "kubernetes",
        "dockerfile",
        "github_actions",
        "--skip-download",
        "--output",
        "json",
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile", "github_actions"}
    return reports


# ------------------------------------------------------------------------- every variant
@pytest.mark.parametrize("variant", VARIANTS)
def test_deploy_files_render_without_jinja_residue(rendered: dict[str, Path], variant: str) -> None:
    project = rendered[variant]
    files = [
        project / "Dockerfile",
        project / ".dockerignore",
        project / "compose.yaml",
        project / ".github" / "workflows" / "ci.yml",
    ]
    files += sorted((project / "observability").iterdir())
    if variant in KUBERNETES_VARIANTS:
        files += sorted((project / "deploy").rglob("*.yaml"))
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "{%" not in text, path
        assert "{{" not in MONITORING_TEMPLATE.sub("", text.replace("${{", "")), path


@pytest.mark.parametrize("variant", VARIANTS)
def test_kubernetes_manifests_exist_only_for_the_kubernetes_target(
    rendered: dict[str, Path], variant: str
) -> None:
    assert (rendered[variant] / "deploy").exists() == (variant in KUBERNETES_VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_dockerfile_has_no_hadolint_finding(rendered: dict[str, Path], variant: str) -> None:
    project = rendered[variant]
    result = run(repo_tool("hadolint"), "--no-color", "Dockerfile", cwd=project)
    assert_clean(result)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("variant", VARIANTS)
def test_dockerfile_runs_non_root_with_exec_form_healthcheck(
    rendered: dict[str, Path], variant: str
) -> None:
    text = (rendered[variant] / "Dockerfile").read_text(encoding="utf-8")
    instructions = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith(" ")
    ]
    stages = [line for line in instructions if line.startswith("FROM ")]
    assert stages[1:] == ["FROM ${PYTHON_IMAGE} AS builder", "FROM ${PYTHON_IMAGE} AS runtime"]
    runtime = text[text.index("FROM ${PYTHON_IMAGE} AS runtime") :]
    assert [line for line in instructions if line.startswith("USER ")] == ["USER 10001:10001"]
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime
    assert "UV_COMPILE_BYTECODE=1" in text
    # The dependency layer is built before the source is copied in.
    assert text.index("--no-install-project") < text.index("COPY src ./src")
    healthcheck = re.search(r"HEALTHCHECK .*\\\n\s+CMD (\[.*\])", runtime)
    assert healthcheck is not None
    command = json.loads(healthcheck.group(1))
    assert command[0] == "python"
    assert "http://127.0.0.1:8000/health/live" in command[-1]
    assert f'ENTRYPOINT ["{SLUG}"]' in runtime
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in runtime
    assert not re.search(r"^(ARG|ENV)\b.*(SECRET|PASSWORD|TOKEN)", text, re.MULTILINE)
    assert ("/data" in runtime) == (VARIANTS[variant].get("database", "sqlite") == "sqlite")


@pytest.mark.parametrize("variant", VARIANTS)
def test_dockerignore_admits_only_what_the_image_needs(
    rendered: dict[str, Path], variant: str
) -> None:
    lines = (rendered[variant] / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(rules)
    assert {"**/.env", "**/*.db"} <= set(rules)


@pytest.mark.parametrize("variant", VARIANTS)
def test_compose_file_matches_the_compose_spec(
    schema_errors: dict[str, list[str]], rendered: dict[str, Path], variant: str
) -> None:
    compose = rendered[variant] / "compose.yaml"
    assert schema_errors[str(compose)] == []


@pytest.mark.parametrize("variant", VARIANTS)
def test_compose_services_are_hardened_and_ordered(rendered: dict[str, Path], variant: str) -> None:
    data = VARIANTS[variant]
    database = data.get("database", "sqlite")
    redis = data.get("rate_limit_backend", "memory") == "redis"
    compose = load_yaml(rendered[variant] / "compose.yaml")
    services = compose["services"]
    expected = {"app", "migrate"} | ({"db"} if database != "sqlite" else set())
    expected |= {"redis"} if redis else set()
    documents = "documents" in data.get("ai_features", [])
    expected |= {"qdrant"} if documents else set()
    assert set(services) == expected

    for name in ("app", "migrate"):
        service = services[name]
        assert service["build"]["context"] == "."
        assert service["read_only"] is True
        assert any(mount.split(":")[0] == CONTAINER_TMP for mount in service["tmpfs"])
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["deploy"]["resources"]["limits"]["memory"]
        environment = service["environment"]
        assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?")
        url = environment["DATABASE_URL"]
        if database == "sqlite":
            assert url == "sqlite:////data/app.db"
            assert "app-data:/data" in service["volumes"]
        else:
            assert url.startswith(f"{database}://")
            assert "@db:" in url
            assert ":?" in url  # the password must come from the environment
        assert ("REDIS_URL" in environment) == redis
        assert ("QDRANT_URL" in environment) == documents

    assert services["migrate"]["command"] == ["migrate"]
    app_needs = services["app"]["depends_on"]
    assert app_needs["migrate"] == {"condition": "service_completed_successfully"}
    assert "test" in services["app"]["healthcheck"]
    for dependency in expected - {"app", "migrate"}:
        service = services[dependency]
        assert app_needs[dependency] == {"condition": "service_healthy"}
        assert services["migrate"]["depends_on"][dependency] == {"condition": "service_healthy"}
        assert "ports" not in service, f"{dependency} must not be published"
        assert "test" in service["healthcheck"]
        assert "no-new-privileges:true" in service["security_opt"]
        for value in service.get("environment", {}).values():
            assert value.startswith("${"), f"{dependency} credentials must come from the env"
    if database == "postgresql":
        assert services["db"]["image"] == "postgres:16"
        assert "pg_isready" in services["db"]["healthcheck"]["test"][-1]
    if database == "mysql":
        assert services["db"]["image"] == "mysql:8.4"
        assert "mysqladmin ping" in services["db"]["healthcheck"]["test"][-1]
    if redis:
        assert services["redis"]["image"] == "redis:7"
        assert "redis-cli ping" in services["redis"]["healthcheck"]["test"][-1]
    if documents:
        assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", services["qdrant"]["image"])
        assert "/dev/tcp/127.0.0.1/6333" in services["qdrant"]["healthcheck"]["test"][-1]
        assert services["app"]["environment"]["QDRANT_API_KEY"].startswith("${QDRANT_API_KEY:?")


@pytest.mark.parametrize("variant", VARIANTS)
def test_workflow_matches_the_github_workflow_schema(
    schema_errors: dict[str, list[str]], rendered: dict[str, Path], variant: str
) -> None:
    workflows = workflow_files(rendered[variant])
    assert workflows
    for workflow in workflows:
        assert schema_errors[str(workflow)] == []


def test_schema_check_catches_an_invalid_compose_file(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  app:\n    imagee: x\n", encoding="utf-8")
    assert check_schema("vendor.compose-spec", [compose])[str(compose)] != []


@pytest.mark.parametrize("variant", VARIANTS)
def test_workflow_has_no_zizmor_finding(rendered: dict[str, Path], variant: str) -> None:
    workflows = workflow_files(rendered[variant])
    assert workflows
    result = run(repo_tool("zizmor"), "--offline", "--no-progress", *map(str, workflows))
    assert_clean(result)
    assert "No findings to report" in result.stdout


@pytest.mark.parametrize("variant", VARIANTS)
def test_workflow_is_pinned_and_least_privileged(rendered: dict[str, Path], variant: str) -> None:
    path = rendered[variant] / ".github" / "workflows" / "ci.yml"
    text = path.read_text(encoding="utf-8")
    workflow = load_yaml(path)
    triggers = workflow[True]  # PyYAML reads the key `on` as a boolean
    assert "pull_request_target" not in triggers
    assert workflow["permissions"] == {}
    assert "${{ github.ref }}" in workflow["concurrency"]["group"]
    jobs = workflow["jobs"]
    assert set(jobs) == {"lint", "types", "test", "security", "image"}
    for name, job in jobs.items():
        assert job["permissions"] == {"contents": "read"}, name
        for step in job["steps"]:
            if "uses" not in step:
                continue
            line = next(
                line.strip().removeprefix("- ").removeprefix("uses: ")
                for line in text.splitlines()
                if f"uses: {step['uses']}" in line
            )
            assert PINNED_USES.match(line), line
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False

    runs = "\n".join(step.get("run", "") for job in jobs.values() for step in job["steps"])
    for command in ("ruff check", "ruff format --check", "mypy", "pytest --cov", "bandit"):
        assert command in runs, command
    assert "pip-audit" in runs

    data = VARIANTS[variant]
    database = data.get("database", "sqlite")
    redis = data.get("rate_limit_backend", "memory") == "redis"
    test_job = jobs["test"]
    services = test_job.get("services", {})
    expected_images = {"postgresql": "postgres:16", "mysql": "mysql:8.4"}
    expected = {expected_images[database]} if database in expected_images else set()
    expected |= {"redis:7"} if redis else set()
    documents = "documents" in data.get("ai_features", [])
    images = {service["image"] for service in services.values()}
    assert {image for image in images if not image.startswith("qdrant/")} == expected
    assert any(image.startswith("qdrant/qdrant:v") for image in images) == documents
    test_env = test_job.get("env", {})
    assert ("TEST_DATABASE_URL" in test_env) == (database != "sqlite")
    assert ("TEST_REDIS_URL" in test_env) == redis
    assert ("TEST_QDRANT_URL" in test_env) == documents

    scan = next(s for s in jobs["image"]["steps"] if "trivy-action" in s.get("uses", ""))
    assert scan["with"]["exit-code"] == "1"
    assert set(scan["with"]["severity"].split(",")) == {"HIGH", "CRITICAL"}
    assert scan["with"]["image-ref"] == f"{SLUG}:ci"
    build = next(s for s in jobs["image"]["steps"] if "build-push-action" in s.get("uses", ""))
    assert build["with"]["push"] is False
    assert build["with"]["tags"] == f"{SLUG}:ci"


@pytest.mark.parametrize("variant", VARIANTS)
def test_checkov_finds_nothing(checkov_results: list[dict[str, Any]], variant: str) -> None:
    prefix = f"/{variant}/"
    failed = [
        f"{check['check_id']} {check['file_path']} {check['resource']}"
        for report in checkov_results
        for check in report["results"]["failed_checks"]
        if check["file_path"].startswith(prefix)
    ]
    assert failed == []
    passed = [
        check
        for report in checkov_results
        for check in report["results"]["passed_checks"]
        if check["file_path"].startswith(prefix)
    ]
    scanned = {check["file_path"].removeprefix(prefix) for check in passed}
    assert {"Dockerfile", ".github/workflows/ci.yml"} <= scanned
    if variant in KUBERNETES_VARIANTS:
        assert {"built-staging.yaml", "built-production.yaml"} <= scanned
    for report in checkov_results:
        for check in report["results"]["skipped_checks"]:
            if check["file_path"].startswith(prefix):
                assert check["check_id"] in ALLOWED_CHECKOV_SKIPS, check["check_id"]
                assert check["check_result"].get("suppress_comment", "").strip()


# --------------------------------------------------------------------------- kubernetes
@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_overlay_validates_strictly(
    kubernetes_validation: dict[tuple[str, str, str], list[str]],
    variant: str,
    overlay: str,
    kubernetes_version: str,
) -> None:
    assert kubernetes_validation[kubernetes_version, variant, overlay] == []


def validate_strictly(manifests: Path) -> subprocess.CompletedProcess[str]:
    """kubernetes-validate in strict mode against the newest bundled schema version."""
    return run(
        repo_tool("kubernetes-validate"),
        "--strict",
        "--kubernetes-version",
        KUBERNETES_VERSIONS[-1],
        str(manifests),
    )


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    manifest = tmp_path / "typo.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  nmespace: y\n",
        encoding="utf-8",
    )
    result = validate_strictly(manifest)
    assert result.returncode != 0


def restricted_violations(kind: str, pod: dict[str, Any]) -> list[str]:
    """What keeps a pod spec from the Pod Security `restricted` profile (plus our own
    rules: fixed uid/gid, read-only root, no token, resources)."""
    problems: list[str] = []
    context = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"{kind}: {key}")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{kind}: service-account token mounted")
    if context.get("runAsNonRoot") is not True:
        problems.append(f"{kind}: pod runAsNonRoot")
    if context.get("runAsUser") != APP_UID or context.get("runAsGroup") != APP_UID:
        problems.append(f"{kind}: pod uid/gid not fixed to {APP_UID}")
    if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append(f"{kind}: pod seccompProfile")
    allowed_volumes = {"configMap", "downwardAPI", "emptyDir", "projected", "secret"}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for volume in volumes.values():
        if not set(volume) - {"name"} <= allowed_volumes:
            problems.append(f"{kind}: volume {volume['name']} of a forbidden type")
    containers = pod.get("initContainers", []) + pod["containers"]
    for container in containers:
        where = f"{kind}/{container['name']}"
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation")
        if sc.get("privileged"):
            problems.append(f"{where}: privileged")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{where}: readOnlyRootFilesystem")
        if sc.get("runAsNonRoot", context.get("runAsNonRoot")) is not True:
            problems.append(f"{where}: runAsNonRoot")
        if sc.get("runAsUser", APP_UID) == 0:
            problems.append(f"{where}: runs as root")
        capabilities = sc.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{where}: capabilities not dropped")
        if not set(capabilities.get("add", [])) <= {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: capabilities added")
        seccomp = sc.get("seccompProfile", context.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile")
        if any("hostPort" in port for port in container.get("ports", [])):
            problems.append(f"{where}: hostPort")
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            if set(resources.get(bound, {})) != {"cpu", "memory"}:
                problems.append(f"{where}: {bound} for cpu and memory")
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == CONTAINER_TMP]
        if not tmp or "emptyDir" not in volumes.get(tmp[0]["name"], {}):
            problems.append(f"{where}: no emptyDir at /tmp")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
def test_every_pod_meets_the_restricted_profile(
    built_overlays: dict[tuple[str, str], str], variant: str, overlay: str
) -> None:
    docs = manifests(built_overlays[variant, overlay])
    workloads = [doc for doc in docs if doc["kind"] in ("Deployment", "Job")]
    assert sorted(doc["kind"] for doc in workloads) == ["Deployment", "Job"]
    problems = [
        problem
        for doc in workloads
        for problem in restricted_violations(doc["kind"], doc["spec"]["template"]["spec"])
    ]
    assert problems == []


def test_restricted_check_catches_a_violation() -> None:
    pod = {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": APP_UID,
            "runAsGroup": APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{"name": "api", "securityContext": {"privileged": True}}],
    }
    problems = restricted_violations("Deployment", pod)
    assert "Deployment/api: privileged" in problems
    assert "Deployment/api: allowPrivilegeEscalation" in problems


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
def test_overlay_wires_namespace_probes_secrets_and_traffic(
    built_overlays: dict[tuple[str, str], str], variant: str, overlay: str
) -> None:
    docs = manifests(built_overlays[variant, overlay])
    namespace_name = f"{SLUG}-{overlay}"
    namespace = one(docs, "Namespace")
    assert namespace["metadata"]["name"] == namespace_name
    for mode in ("enforce", "audit", "warn"):
        assert namespace["metadata"]["labels"][f"pod-security.kubernetes.io/{mode}"] == (
            "restricted"
        )
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace_name, doc["metadata"]["name"]

    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert re.fullmatch(rf"registry\.example\.com/{SLUG}@sha256:[0-9a-f]{{64}}", container["image"])
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    service_account = one(docs, "ServiceAccount")
    assert service_account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == service_account["metadata"]["name"]

    # Generated ConfigMap and Secret (hashed names) are what the workloads reference.
    config_map = one(docs, "ConfigMap")
    secret = one(docs, "Secret")
    assert set(secret["data"]) >= {"SECRET_KEY", "DATABASE_URL", "REDIS_URL"}
    job = one(docs, "Job")
    for workload in (deployment, job):
        refs = workload["spec"]["template"]["spec"]["containers"][0]["envFrom"]
        assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in refs
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in refs
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert json.loads(config_map["data"]["TRUSTED_HOSTS"])

    ingress = one(docs, "Ingress")
    host = ingress["spec"]["rules"][0]["host"]
    assert ingress["spec"]["tls"][0]["hosts"] == [host]
    assert ingress["spec"]["tls"][0]["secretName"]
    assert host in json.loads(config_map["data"]["TRUSTED_HOSTS"])
    assert one(docs, "HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"
    assert (
        one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
        == (deployment["spec"]["selector"]["matchLabels"])
    )

    policies = {
        doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "NetworkPolicy"
    }
    assert policies["default-deny-all"] == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
    }
    ingress_ports = {
        port["port"]
        for spec in policies.values()
        for rule in spec.get("ingress", [])
        for port in rule["ports"]
    }
    egress_ports = {
        port["port"]
        for spec in policies.values()
        for rule in spec.get("egress", [])
        for port in rule["ports"]
    }
    database_port = 3306 if VARIANTS[variant]["database"] == "mysql" else 5432
    smtp_port = int(config_map["data"]["SMTP_PORT"])
    assert ingress_ports == {8000}
    features = VARIANTS[variant].get("ai_features", [])
    documents = "documents" in features
    # Any AI feature reaches its provider over HTTPS; documents also reach the Qdrant server.
    feature_ports = ({443} if features else set()) | ({6333} if documents else set())
    assert egress_ports == {53, database_port, 6379, smtp_port} | feature_ports
    assert ("QDRANT_URL" in config_map["data"]) == documents
    assert ("QDRANT_API_KEY" in secret["data"]) == documents


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
def test_overlays_pin_the_image_by_digest(
    rendered: dict[str, Path],
    built_overlays: dict[tuple[str, str], str],
    variant: str,
    overlay: str,
) -> None:
    """The checkov skip of CKV_K8S_43 says "each overlay pins the digest": it does."""
    kustomization = load_yaml(
        rendered[variant] / "deploy" / "overlays" / overlay / "kustomization.yaml"
    )
    (image,) = kustomization["images"]
    assert "newTag" not in image
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image["digest"])
    images = {
        doc["spec"]["template"]["spec"]["containers"][0]["image"]
        for doc in manifests(built_overlays[variant, overlay])
        if doc["kind"] in ("Deployment", "Job")
    }
    assert images == {f"registry.example.com/{SLUG}@{image['digest']}"}


@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
def test_smtp_egress_port_is_the_configured_smtp_port(
    rendered: dict[str, Path], variant: str
) -> None:
    """Mail can leave the cluster: the policy's SMTP rule, the ConfigMap and the service's
    default agree on one port."""
    project = rendered[variant]
    base = load_yaml(project / "deploy" / "base" / "kustomization.yaml")
    literals = dict(item.split("=", 1) for item in base["configMapGenerator"][0]["literals"])
    config = (project / "src" / "my_service" / "config.py").read_text(encoding="utf-8")
    default = re.search(r"^    smtp_port: int = (\d+)$", config, re.MULTILINE)
    assert default is not None
    assert literals["SMTP_PORT"] == default.group(1)
    policies = [
        doc
        for doc in yaml.safe_load_all(
            (project / "deploy" / "base" / "networkpolicy.yaml").read_text(encoding="utf-8")
        )
        if doc["metadata"]["name"].endswith("allow-egress")
    ]
    ports = {port["port"] for rule in policies[0]["spec"]["egress"] for port in rule["ports"]}
    assert int(literals["SMTP_PORT"]) in ports


# ---------------------------------------------------------------------------- supply chain
UV_SYNC = re.compile(r"\buv sync\b[^\n]*")
UV_EXPORT = re.compile(r"\buv export\b[^\n]*")


@pytest.mark.parametrize("variant", VARIANTS)
def test_image_builds_only_from_the_committed_lock(rendered: dict[str, Path], variant: str) -> None:
    dockerfile = (rendered[variant] / "Dockerfile").read_text(encoding="utf-8")
    syncs = UV_SYNC.findall(dockerfile)
    assert len(syncs) == 2
    assert all("--locked" in sync for sync in syncs), syncs
    # No glob and no fallback: a missing uv.lock fails the COPY, loudly.
    assert re.search(r"^COPY pyproject\.toml uv\.lock \./$", dockerfile, re.MULTILINE)
    assert "uv.lock*" not in dockerfile
    assert "if [ -f uv.lock ]" not in dockerfile


@pytest.mark.parametrize("variant", VARIANTS)
def test_base_images_are_pinned_by_digest_and_overridable(
    rendered: dict[str, Path], variant: str
) -> None:
    dockerfile = (rendered[variant] / "Dockerfile").read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", dockerfile, re.MULTILINE))
    froms = re.findall(r"^FROM (\S+)(?: AS (\S+))?$", dockerfile, re.MULTILINE)
    # A literal, digest-pinned line (what Dependabot updates), then the build argument that
    # defaults to it: both stages run on the pinned image unless a build overrides it.
    pinned, builder, runtime = froms
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", pinned[0])
    assert args["PYTHON_IMAGE"] == pinned[1]
    assert builder == ("${PYTHON_IMAGE}", "builder")
    assert runtime == ("${PYTHON_IMAGE}", "runtime")


@pytest.mark.parametrize("variant", VARIANTS)
def test_ci_installs_audits_and_describes_exactly_the_lock(
    rendered: dict[str, Path], variant: str
) -> None:
    workflow = (rendered[variant] / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    syncs = UV_SYNC.findall(workflow)
    assert syncs
    assert all("--locked" in sync for sync in syncs), syncs
    exports = UV_EXPORT.findall(workflow)
    assert exports
    assert all("--locked" in export and "--no-dev" in export for export in exports)
    assert any("--format cyclonedx1.5" in export for export in exports)
    audit = next(line for line in workflow.splitlines() if "pip-audit" in line and "uvx" in line)
    requirements = next(e for e in exports if "requirements-txt" in e).split("--output-file ")[1]
    assert f"--requirement {requirements.split()[0]}" in audit
    assert "--disable-pip" in audit  # nothing resolved again: the hashed, locked set only
    steps = [
        step
        for job in load_yaml(rendered[variant] / ".github" / "workflows" / "ci.yml")[
            "jobs"
        ].values()
        for step in job["steps"]
    ]
    sbom_uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert [step["with"]["path"] for step in sbom_uploads] == ["sbom.cdx.json"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_dependabot_updates_every_pin(rendered: dict[str, Path], variant: str) -> None:
    config = load_yaml(rendered[variant] / ".github" / "dependabot.yml")
    assert config["version"] == 2
    assert {update["package-ecosystem"] for update in config["updates"]} == {
        "uv",
        "docker",
        "github-actions",
    }
    assert all(update["directory"] == "/" for update in config["updates"])


@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
def test_real_secrets_are_git_ignored(rendered: dict[str, Path], variant: str) -> None:
    project = rendered[variant]
    git = repo_tool("git")
    assert_clean(run(git, "init", "--quiet", cwd=project))
    for overlay in OVERLAYS:
        secrets = f"deploy/overlays/{overlay}/secrets.env"
        assert (project / secrets).is_file()
        assert run(git, "check-ignore", "--quiet", secrets, cwd=project).returncode == 0
        example = f"{secrets}.example"
        assert run(git, "check-ignore", "--quiet", example, cwd=project).returncode == 1


def test_hadolint_and_zizmor_report_what_they_should(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python\nRUN pip install uv\n", encoding="utf-8")
    assert run(repo_tool("hadolint"), "--no-color", str(dockerfile)).returncode != 0
    workflow = tmp_path / "ci.yml"
    workflow.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n"
        "    steps:\n      - uses: actions/checkout@v4\n",
        encoding="utf-8",
    )
    assert run(repo_tool("zizmor"), "--offline", "--no-progress", str(workflow)).returncode != 0


# ------------------------------------------------------------------------- observability
def exported_metric_names(project: Path) -> set[str]:
    """The metric names the service's source declares (prometheus_client's first argument)."""
    source = "\n".join(path.read_text(encoding="utf-8") for path in (project / "src").rglob("*.py"))
    return set(re.findall(r'"([a-z_]+)",\s*\n?\s*"[A-Z0-9]', source)) | {"up"}


def queried_metric_names(expression: str) -> set[str]:
    names = set(re.findall(r"\b([a-z_]+)\{", expression))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


@pytest.mark.parametrize("variant", VARIANTS)
def test_alert_rules_pass_promtool(rendered: dict[str, Path], variant: str) -> None:
    check_rules(rendered[variant] / "observability" / "prometheus-rules.yaml")


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: rate(x[5m]\n",
        encoding="utf-8",
    )
    assert run(promtool(), "check", "rules", str(rules)).returncode != 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_dashboard_and_alerts_query_only_metrics_the_service_exports(
    rendered: dict[str, Path], variant: str
) -> None:
    project = rendered[variant]
    exported = exported_metric_names(project)
    assert {"http_requests_total", "db_pool_requests_waiting", "auth_failures_total"} <= exported
    dashboard = json.loads((project / "observability" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    rules = load_yaml(project / "observability" / "prometheus-rules.yaml")
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    queried = set().union(*map(queried_metric_names, expressions))
    assert queried - exported == set()
    wanted = {"http_requests_total", "rate_limit_decisions_total", "db_pool_connections_in_use"}
    if "chat" in variant:
        wanted |= {"ai_tokens_total", "ai_cost_micros_total"}
    assert wanted <= queried
    assert all('job="my-service"' in expression for expression in expressions)
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.parametrize("variant", KUBERNETES_VARIANTS)
def test_monitoring_component_is_optional_and_valid(
    rendered: dict[str, Path], variant: str, tmp_path: Path
) -> None:
    """The base and its overlays hold no operator kind (clusters without the Prometheus
    Operator apply them as they are); an overlay that adds the component gets a
    ServiceMonitor on the generated Secret and the rules of observability/, which pass
    promtool, and everything else it adds validates strictly."""
    project = tmp_path / variant
    shutil.copytree(rendered[variant], project)
    plain = manifests(build_overlay(project, "staging"))
    assert not [doc for doc in plain if doc["kind"] in MONITORING_KINDS]
    kustomization = project / "deploy" / "overlays" / "staging" / "kustomization.yaml"
    with kustomization.open("a", encoding="utf-8") as handle:
        handle.write("\ncomponents:\n  - ../../base/monitoring\n")
    docs = manifests(build_overlay(project, "staging"))
    secret = one(docs, "Secret")["metadata"]["name"]
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["authorization"]["credentials"] == {"name": secret, "key": "METRICS_TOKEN"}
    assert endpoint["path"] == "/metrics"
    rule = one(docs, "PrometheusRule")
    assert rule["spec"] == load_yaml(project / "observability" / "prometheus-rules.yaml")
    rules_file = tmp_path / "prometheusrule-spec.yaml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    check_rules(rules_file)
    # kubernetes-validate has no schema for the operator's kinds; the rest must pass strictly.
    others = tmp_path / "others.yaml"
    others.write_text(
        yaml.safe_dump_all([doc for doc in docs if doc["kind"] not in MONITORING_KINDS]),
        encoding="utf-8",
    )
    result = validate_strictly(others)
    assert_clean(result)
    scrape = [doc for doc in docs if doc["metadata"]["name"].endswith("-allow-scrape")]
    assert [doc["kind"] for doc in scrape] == ["NetworkPolicy"]
