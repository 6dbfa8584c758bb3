"""The opt-in data store components: CloudNativePG clusters and the NATS JetStream cluster,
how the services reach them, and the network policies around them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.deploy.test_manifests import (
    WITH_DATABASE,
    Manifest,
    allows,
    containers,
    deployments,
    environment,
    of_kind,
    overlay,
    pod_labels,
    render_with,
    setting,
)

NATS = {"app.kubernetes.io/name": "nats"}


def cnpg(service: str) -> dict[str, str]:
    """The labels CloudNativePG puts on the pods of cluster postgres-<service>."""
    return {"cnpg.io/cluster": f"postgres-{service}"}


def of(manifests: list[Manifest], kind: str, api: str) -> dict[str, Manifest]:
    return {
        m["metadata"]["name"]: m
        for m in manifests
        if m["kind"] == kind and m["apiVersion"].startswith(api)
    }


def test_postgres_component_one_cluster_per_service(tmp_path: Path) -> None:
    manifests = render_with(tmp_path, "postgres")
    clusters = of(manifests, "Cluster", "postgresql.cnpg.io/")
    assert {f"postgres-{s}" for s in WITH_DATABASE} <= set(clusters)
    backups = of(manifests, "ScheduledBackup", "postgresql.cnpg.io/")
    for name, cluster in clusters.items():
        service = name.removeprefix("postgres-")
        spec = cluster["spec"]
        assert spec["instances"] == 3, name
        assert re.fullmatch(r"\d+Gi", spec["storage"]["size"]), name
        assert spec["bootstrap"]["initdb"] == {"database": service, "owner": service}, name
        assert not spec["imageName"].endswith(":latest"), name
        assert spec["enableSuperuserAccess"] is False, name
        store = spec["backup"]["barmanObjectStore"]
        assert store["destinationPath"].endswith(f"/{name}"), name
        assert {ref["name"] for ref in store["s3Credentials"].values()} == {
            "postgres-backup-credentials"
        }
        assert any(b["spec"]["cluster"]["name"] == name for b in backups.values()), name


def test_postgres_component_wires_each_service_to_its_cluster(tmp_path: Path) -> None:
    manifests = render_with(tmp_path, "postgres")
    for name, deployment in deployments(manifests).items():
        if name not in WITH_DATABASE:
            continue
        for container in containers(deployment):
            env = container["env"]
            names = [variable["name"] for variable in env]
            url_at = names.index(f"{name.upper()}_DATABASE_URL")
            url = env[url_at]
            assert "valueFrom" not in url, name
            assert url["value"] == (
                "postgresql+asyncpg://$(DATABASE_USER):$(DATABASE_PASSWORD)"
                f"@postgres-{name}-rw:5432/{name}"
            )
            # Kubernetes expands $(VAR) only from variables declared before it.
            for part, key in (("DATABASE_USER", "username"), ("DATABASE_PASSWORD", "password")):
                assert names.index(part) < url_at, name
                ref = env[names.index(part)]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": f"postgres-{name}-app", "key": key}


def test_postgres_policies_admit_only_the_owning_service(tmp_path: Path) -> None:
    manifests = render_with(tmp_path, "postgres")
    policies = list(of_kind(manifests, "NetworkPolicy").values())
    labels = pod_labels(manifests)
    for database in WITH_DATABASE:
        admitted = {
            name
            for name, pod in labels.items()
            if allows(policies, "Ingress", cnpg(database), pod, 5432)
        }
        assert admitted == {database}, database
        # Replication between the cluster's own instances, and not to another cluster's.
        assert allows(policies, "Ingress", cnpg(database), cnpg(database), 5432)
        assert allows(policies, "Egress", cnpg(database), cnpg(database), 5432)
        for other in WITH_DATABASE:
            if other != database:
                assert not allows(policies, "Ingress", cnpg(database), cnpg(other), 5432)


def test_nats_component_is_a_three_node_jetstream_cluster(tmp_path: Path) -> None:
    manifests = render_with(tmp_path, "nats")
    (statefulset,) = of_kind(manifests, "StatefulSet").values()
    spec = statefulset["spec"]
    assert spec["replicas"] == 3
    assert spec["serviceName"] == "nats-headless"
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    (config_map,) = [
        c for name, c in of_kind(manifests, "ConfigMap").items() if name.startswith("nats-config")
    ]
    conf = config_map["data"]["nats.conf"]
    assert "jetstream" in conf
    routes = re.findall(r"nats://(nats-\d)\.nats-headless:6222", conf)
    assert routes == [f"nats-{i}" for i in range(spec["replicas"])]
    (data_mount,) = [
        m for m in spec["template"]["spec"]["containers"][0]["volumeMounts"] if m["name"] == "data"
    ]
    assert re.search(rf"store_dir:\s*{data_mount['mountPath']}\s", conf)
    services = of_kind(manifests, "Service")
    assert [p["port"] for p in services["nats"]["spec"]["ports"]] == [4222]
    # The services' TENPO_NATS_URL names that Service; every stream gets three replicas.
    for name, deployment in deployments(manifests).items():
        env = environment(manifests, next(containers(deployment)))
        assert setting(env, name, "NATS_URL") == "nats://nats:4222"
        assert setting(env, name, "NATS_STREAM_REPLICAS") == "3"


def test_nats_policies_admit_the_services_and_the_routes(tmp_path: Path) -> None:
    manifests = render_with(tmp_path, "nats")
    policies = list(of_kind(manifests, "NetworkPolicy").values())
    for name, pod in pod_labels(manifests).items():
        admitted = allows(policies, "Ingress", NATS, pod, 4222)
        assert admitted == (name in WITH_DATABASE), name
    assert allows(policies, "Ingress", NATS, NATS, 6222)
    assert allows(policies, "Egress", NATS, NATS, 6222)
    assert not allows(policies, "Ingress", NATS, {"app.kubernetes.io/name": "x"}, 4222)


def test_stream_replicas_stay_one_in_dev_and_three_in_production() -> None:
    for name, replicas in (("dev", "1"), ("production", "3")):
        manifests = overlay(name)
        for service, deployment in deployments(manifests).items():
            env = environment(manifests, next(containers(deployment)))
            assert setting(env, service, "NATS_STREAM_REPLICAS") == replicas, (name, service)
