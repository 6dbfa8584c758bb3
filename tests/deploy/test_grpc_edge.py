"""The grpc-edge component: HAProxy in the gateway's pod on the gRPC port, its files rendered
by the init container from the same image and settings, the Python ingress behind it on the
pod's loopback. The init container's command is run here with the environment Kubernetes
would give it, and HAProxy checks the files it writes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.gateway.config import GatewaySettings
from services.gateway.edge import CONFIG_FILE, MAP_FILE
from tests.deploy.test_manifests import (
    ROOT,
    deployments,
    environment,
    pod_spec,
    render_with,
    server,
)

GET_PRODUCT = "/tenpo.catalog.v1.CatalogService/GetProduct"


def _gateway(tmp_path: Path) -> tuple[list[dict[str, object]], dict[str, object]]:
    tmp_path.mkdir(exist_ok=True)
    manifests = render_with(tmp_path, "grpc-edge")
    return manifests, deployments(manifests)["gateway"]


def test_the_edge_takes_the_grpc_port_and_the_ingress_moves_behind_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests, gateway = _gateway(tmp_path)
    spec = pod_spec(gateway)
    (edge,) = [c for c in spec["containers"] if c["name"] == "edge"]
    assert [(p["name"], p["containerPort"]) for p in edge["ports"]] == [("grpc", 50050)]
    assert edge["image"].startswith("haproxy:") and not edge["image"].endswith(":latest")
    assert edge["securityContext"]["readOnlyRootFilesystem"] is True
    assert edge["readinessProbe"] and edge["livenessProbe"] and edge["resources"]["limits"]
    ingress = server(gateway)
    assert 50050 not in [p["containerPort"] for p in ingress["ports"]]
    # The server's own settings, from its rendered environment: loopback, behind the edge.
    env = environment(manifests, ingress)
    for variable in list(os.environ):
        if variable.startswith(("TENPO_", "GATEWAY_")):
            monkeypatch.delenv(variable)
    for variable, value in env.items():
        if not value.startswith("<"):  # secret references: not what this test checks
            monkeypatch.setenv(variable, value)
    monkeypatch.setenv("TENPO_ENVIRONMENT", "development")  # no secrets to check here
    settings = GatewaySettings()
    assert (settings.grpc_host, settings.grpc_port, settings.behind_edge) == (
        "127.0.0.1",
        50060,
        True,
    )
    mounts = {m["mountPath"] for m in edge["volumeMounts"]}
    (init,) = [c for c in spec["initContainers"] if c["name"] == "edge-config"]
    assert mounts == {m["mountPath"] for m in init["volumeMounts"]} == {"/etc/tenpo-edge"}


def test_the_init_container_renders_files_haproxy_accepts(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    assert Path(haproxy).exists(), "needs Debian's haproxy: `make test` installs it as root"
    manifests, gateway = _gateway(tmp_path / "k")
    (init,) = [c for c in pod_spec(gateway)["initContainers"] if c["name"] == "edge-config"]
    assert init["args"][0] == "services.gateway.edge"  # the image runs `python -m ARGS`
    out = tmp_path / "edge"
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TENPO_", "GATEWAY_"))
    } | environment(manifests, init)
    subprocess.run([sys.executable, "-m", init["args"][0], str(out)], env=env, cwd=ROOT, check=True)
    config = (out / CONFIG_FILE).read_text()
    assert "  bind 0.0.0.0:50050 proto h2\n" in config
    assert "  server ingress 127.0.0.1:50060\n" in config  # where the server container listens
    assert "  server catalog0 catalog:50051 resolvers default" in config
    assert f"{GET_PRODUCT} catalog" in (out / MAP_FILE).read_text().splitlines()
    checked = subprocess.run(
        [haproxy, "-c", "-f", str(out / CONFIG_FILE)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
