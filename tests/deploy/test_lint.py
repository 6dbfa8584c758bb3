"""Every rendering of deploy/ validates against the Kubernetes API schemas (offline, from
the kubernetes-validate package) and passes the policy linter a platform team runs
(checkov): no privileged pods, resources and probes set, read-only root filesystems, no
latest tags. Checks skipped on purpose carry their reason inline, as annotations."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_manifests import DEPLOY, ROOT, Manifest, render

#: The oldest Kubernetes the manifests support (deploy/README.md) and the newest schemas.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.latest_version()]
#: Custom resources have no schema in the Kubernetes API: CloudNativePG's CRD is ~10,000
#: lines of generated OpenAPI (and changes per operator release), so it is not vendored;
#: tests/deploy/test_data_stores.py checks the fields we rely on instead.
CUSTOM_RESOURCES = {
    "postgresql.cnpg.io/v1": {"Cluster", "ScheduledBackup"},
    # The Prometheus Operator's; tests/deploy/test_monitoring.py reads its rules.
    "monitoring.coreos.com/v1": {"PrometheusRule"},
}
#: Every component, with the base, in a namespace (as an overlay would put them).
COMPONENTS = ["otel", "store-network", "postgres", "nats", "monitoring", "grpc-edge"]


@functools.cache
def renderings() -> dict[str, tuple[Manifest, ...]]:
    with tempfile.TemporaryDirectory() as directory:
        combined = Path(directory)
        # kustomize wants relative paths.
        relative = Path(os.path.relpath(DEPLOY, combined))
        lines = ["namespace: tenpo-lint", "resources:", f"  - {relative / 'base'}", "components:"]
        lines += [f"  - {relative / 'components' / c}" for c in COMPONENTS]
        # As every overlay does: the base names the image without a registry or tag.
        lines += ["images:", "  - name: tenpo", "    newName: registry.tenpo.example/tenpo"]
        lines += ["    newTag: 0.1.0"]
        (combined / "kustomization.yaml").write_text("\n".join(lines) + "\n")
        everything = tuple(render(combined))
    return {
        **{
            name: tuple(render(DEPLOY / "overlays" / name))
            for name in ("dev", "production", "example-secrets")
        },
        "all-components": everything,
    }


def test_every_rendering_matches_the_kubernetes_schemas() -> None:
    skipped: set[tuple[str, str]] = set()
    for name, manifests in renderings().items():
        assert manifests, name
        for manifest in manifests:
            api, kind = manifest["apiVersion"], manifest["kind"]
            if kind in CUSTOM_RESOURCES.get(api, set()):
                skipped.add((api, kind))
                continue
            for version in KUBERNETES_VERSIONS:
                where = f"{name}: {kind}/{manifest['metadata']['name']} on {version}"
                try:
                    # strict: an unknown (misspelt, misplaced) field fails too.
                    kubernetes_validate.validate(manifest, version, strict=True)
                except kubernetes_validate.ValidationError as error:
                    pytest.fail(f"{where}: {error.message} at {list(error.path)}")
    # The skip list is exact: a custom resource it names but nothing renders is stale.
    assert skipped == {(api, k) for api, kinds in CUSTOM_RESOURCES.items() for k in kinds}


def test_schema_validation_rejects_a_misplaced_field() -> None:
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "x", "image": "x:1", "readOnly": True}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)


# --- policy linter --------------------------------------------------------------------------

#: The policies the platform team asks for, as checkov check ids.
REQUIRED_CHECKS = {
    "CKV_K8S_16": "no privileged containers",
    "CKV_K8S_14": "image tag fixed, not latest",
    "CKV_K8S_8": "liveness probe",
    "CKV_K8S_9": "readiness probe",
    "CKV_K8S_22": "read-only root filesystem",
    "CKV_K8S_13": "memory limit",
    "CKV_K8S_10": "CPU request",
}
#: A Deployment that breaks each of them, to prove the linter run here catches them.
BAD_DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "bad", "namespace": "tenpo-lint"},
    "spec": {
        "selector": {"matchLabels": {"app": "bad"}},
        "template": {
            "metadata": {"labels": {"app": "bad"}},
            "spec": {
                "containers": [
                    {
                        "name": "bad",
                        "image": "registry.tenpo.example/tenpo:latest",
                        "securityContext": {"privileged": True},
                    }
                ]
            },
        },
    },
}


def checkov() -> str:
    found = shutil.which("checkov") or str(ROOT / ".tools" / "checkov" / "bin" / "checkov")
    if not os.path.exists(found):
        pytest.fail(
            "checkov is missing: `make checkov` installs it into .tools/checkov "
            "(from PyPI, in a virtualenv of its own; `make test` does this first)"
        )
    return found


@functools.cache
def lint_results() -> dict[str, list[dict[str, Any]]]:
    """checkov's passed, failed and skipped checks per file, in one run over every
    rendering and the bad Deployment."""
    with tempfile.TemporaryDirectory() as directory:
        for name, manifests in renderings().items():
            Path(directory, f"{name}.yaml").write_text(yaml.safe_dump_all(manifests))
        Path(directory, "bad.yaml").write_text(yaml.safe_dump(BAD_DEPLOYMENT))
        # --skip-download: offline, nothing fetched from the vendor's platform.
        command = [checkov(), "-d", directory, "--framework", "kubernetes", "--skip-download"]
        result = subprocess.run(
            [*command, "--output", "json"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert result.stdout, result.stderr[-3000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (kubernetes,) = [r for r in reports if r["check_type"] == "kubernetes"]
    grouped: dict[str, list[dict[str, Any]]] = {}
    for outcome in ("passed", "failed", "skipped"):
        for check in kubernetes["results"][f"{outcome}_checks"]:
            check["outcome"] = outcome
            grouped.setdefault(Path(check["file_path"]).stem, []).append(check)
    return grouped


def test_every_rendering_passes_the_policy_linter() -> None:
    results = lint_results()
    for name in renderings():
        checks = results[name]
        failed = [
            f"{c['check_id']} {c['resource']}: {c['check_name']}"
            for c in checks
            if c["outcome"] == "failed"
        ]
        assert not failed, f"{name}:\n" + "\n".join(failed)
        # Every deliberate skip says why, next to the resource it applies to.
        for check in checks:
            if check["outcome"] == "skipped":
                reason = check["check_result"].get("suppress_comment") or ""
                assert len(reason) > 20, check["check_id"]
        # The required policies were evaluated here, not skipped (where there are pods).
        if not any(m["kind"] in {"Deployment", "StatefulSet"} for m in renderings()[name]):
            continue
        ran = {c["check_id"] for c in checks if c["outcome"] == "passed"}
        assert set(REQUIRED_CHECKS) <= ran, (name, set(REQUIRED_CHECKS) - ran)


def test_the_policy_linter_catches_what_it_must() -> None:
    failed = {c["check_id"] for c in lint_results()["bad"] if c["outcome"] == "failed"}
    missing = {k: v for k, v in REQUIRED_CHECKS.items() if k not in failed}
    assert not missing
