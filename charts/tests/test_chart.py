"""The chart, with a real Helm engine (helm-python-sdk): lint, render with the default values
and each documented option, what the templates produce, the schema's refusals, and every
rendered object accepted by a real API server (`kubectl apply --dry-run=server`)."""

import os
import subprocess
import uuid
from pathlib import Path

import helm_python as helm
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "prow-operator"
RELEASE = "prow"
NAMESPACE = "prow-system"


def render(values=None, namespace=NAMESPACE):
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values or {}, name=RELEASE, namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [o for o in yaml.safe_load_all(text) if o]
    return objects


def notes(values=None):
    chart = helm.Chart.load(str(CHART))
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def named(objects, kind, suffix):
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"one {kind} named *{suffix}: {[o['metadata']['name'] for o in found]}"
    return found[0]


def container(objects, component):
    deployment = named(objects, "Deployment", f"-{component}")
    return deployment, deployment["spec"]["template"]["spec"]["containers"][0]


def test_the_chart_lints_clean_in_strict_mode():
    report = helm.lint(str(CHART), strict=True, kube_version="v1.30.0")
    assert report["errors"] == [], report


@pytest.mark.parametrize("component", ["operator", "webhook"])
def test_both_deployments_run_hardened_pods_with_requests_and_limits(component):
    deployment, c = container(render(), component)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(c["resources"]) == {"requests", "limits"}
    assert deployment["spec"]["replicas"] == 2
    assert c["image"] == "prow-operator.local/prow-operator:0.1.0"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_the_webhook_keeps_admitting_through_a_rollout_and_a_drain():
    objects = render()
    deployment, _ = container(objects, "webhook")
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    pdb = named(objects, "PodDisruptionBudget", "-webhook")
    assert pdb["spec"]["minAvailable"] == 1
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"


def test_the_webhook_configurations_cover_every_endpoint_with_safe_settings():
    objects = render()
    mutating = of_kind(objects, "MutatingWebhookConfiguration")[0]["webhooks"]
    validating = of_kind(objects, "ValidatingWebhookConfiguration")[0]["webhooks"]
    paths = {h["clientConfig"]["service"]["path"] for h in mutating + validating}
    assert paths == {
        "/mutate/prowjobs",
        "/validate/prowjobs",
        "/validate/presets",
        "/validate/testclusters",
        "/validate/testclusterpools",
        "/validate/jobdefinitions",
    }
    for hook in mutating + validating:
        assert hook["sideEffects"] == "None"
        assert hook["failurePolicy"] == "Fail"
        assert 1 <= hook["timeoutSeconds"] <= 10
        assert hook["clientConfig"]["service"]["namespace"] == NAMESPACE
        expression = hook["namespaceSelector"]["matchExpressions"][0]
        assert expression["operator"] == "NotIn" and expression["values"] == [NAMESPACE]
    deletes = [h for h in validating if "DELETE" in h["rules"][0]["operations"]]
    assert [h["name"] for h in deletes] == ["validate-testclusters.prow-operator.dev"]


def rules_of(objects):
    for role in of_kind(objects, "Role") + of_kind(objects, "ClusterRole"):
        for rule in role["rules"]:
            yield role, rule


def test_rbac_is_least_privilege():
    objects = render({"testClusterApi": {"enabled": True}})
    for role, rule in rules_of(objects):
        assert "*" not in rule["verbs"], role["metadata"]["name"]
        assert "*" not in rule["resources"], role["metadata"]["name"]
        assert "*" not in rule.get("apiGroups", []), role["metadata"]["name"]
        for escalation in ("escalate", "bind", "impersonate"):
            assert escalation not in rule["verbs"], role["metadata"]["name"]
    configurations = {"mutatingwebhookconfigurations", "validatingwebhookconfigurations"}
    for role in of_kind(objects, "ClusterRole"):
        for rule in role["rules"]:
            resources = set(rule["resources"])
            if resources & configurations:
                # The webhook's own two configurations, by name, to set their caBundle.
                assert resources <= configurations and rule["resourceNames"] == ["prow-prow-operator"]
                assert set(rule["verbs"]) == {"get", "patch"}
            else:
                assert resources <= {"tokenreviews", "subjectaccessreviews"}, role["metadata"]["name"]
    for binding in of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding"):
        assert binding["roleRef"]["name"] != "cluster-admin"
    secret_rules = [
        (role["metadata"]["namespace"], rule)
        for role, rule in rules_of(objects)
        if "secrets" in rule["resources"]
    ]
    assert {ns for ns, _ in secret_rules} == {"test-pods", NAMESPACE}, "no cluster-wide Secrets"
    for ns, rule in secret_rules:
        if ns == NAMESPACE:
            # The webhook's certificate: create, then that one Secret by name; the operator
            # reads the BuildClusters' kubeconfig Secrets, and nothing more.
            assert (
                rule["verbs"] == ["create"]
                or rule.get("resourceNames") == ["prow-prow-operator-webhook-tls"]
                or rule["verbs"] == ["get"]
            ), rule
    cluster_roles = of_kind(render(), "ClusterRole")
    assert [r["metadata"]["name"] for r in cluster_roles] == ["prow-prow-operator-webhook-ca-bundle"]
    secret_mode = render({"webhook": {"tls": {"mode": "secret", "caBundle": "Q0E="}}})
    assert not of_kind(secret_mode, "ClusterRole"), "no ClusterRole without the TestCluster API or auto TLS"


def test_build_clusters_are_read_beside_the_release_and_documented():
    objects = render()
    builds = named(objects, "Role", "-operator-builds")
    assert builds["metadata"]["namespace"] == NAMESPACE
    resources = {r: rule["verbs"] for rule in builds["rules"] for r in rule["resources"]}
    assert resources["buildclusters"] == ["get", "list", "watch"]
    assert "patch" in resources["buildclusters/status"]
    assert resources["secrets"] == ["get"], "kubeconfigs are only read"
    webhook = named(objects, "Role", "-webhook-builds")
    assert webhook["rules"] == [
        {"apiGroups": ["prow-operator.dev"], "resources": ["buildclusters"], "verbs": ["get", "list", "watch"]}
    ], "by default the webhook reads no Secret but its certificate's"
    _, c = container(objects, "webhook")
    assert "--deep-check-build-clusters=false" in c["args"]
    # Opted in, the deep check reads a BuildCluster's kubeconfig to dry-run a pod there.
    deep = render({"webhook": {"deepCheckBuildClusters": True}})
    assert named(deep, "Role", "-webhook-builds")["rules"][1] == {
        "apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    _, c = container(deep, "webhook")
    assert "--deep-check-build-clusters=true" in c["args"]
    shallow = render({"webhook": {"deepCheck": False, "deepCheckBuildClusters": True}})
    assert not [r for r in named(shallow, "Role", "-webhook-builds")["rules"] if "secrets" in r["resources"]]
    _, c = container(shallow, "webhook")
    assert "--deep-check-build-clusters=false" in c["args"], "no deep check, no Secrets"
    bindings = {b["metadata"]["name"]: b for b in of_kind(objects, "RoleBinding")}
    assert bindings["prow-prow-operator-operator-builds"]["subjects"][0]["name"] == "prow-prow-operator-operator"
    assert bindings["prow-prow-operator-webhook-builds"]["subjects"][0]["name"] == "prow-prow-operator-webhook"
    for component in ("operator", "webhook"):
        _, c = container(objects, component)
        assert f"--build-cluster-namespace={NAMESPACE}" in c["args"], component
    assert "files/build-cluster-access.yaml" in notes()
    access = list(yaml.safe_load_all((CHART / "files" / "build-cluster-access.yaml").read_text()))
    kinds = sorted(o["kind"] for o in access)
    assert kinds == ["Role", "RoleBinding", "Secret", "ServiceAccount"]
    role = next(o for o in access if o["kind"] == "Role")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    # Exactly what the operator checks with its access reviews (api/src/buildcluster.rs).
    assert ("", "pods", "create") in granted and ("policy", "poddisruptionbudgets", "watch") in granted
    assert ("", "secrets", "patch") in granted
    assert ("events.k8s.io", "events", "create") in granted
    assert all(v not in {"*", "escalate", "bind"} for _, _, v in granted)


def test_roles_follow_the_namespaces_values():
    objects = render({"namespaces": {"jobs": "ci", "pods": "ci-pods"}})
    by_name = {r["metadata"]["name"]: r["metadata"]["namespace"] for r in of_kind(objects, "Role")}
    assert by_name["prow-prow-operator-operator-jobs"] == "ci"
    assert by_name["prow-prow-operator-operator-pods"] == "ci-pods"
    assert by_name["prow-prow-operator-operator-leader"] == NAMESPACE
    _, c = container(objects, "operator")
    assert "--watch-namespace=ci" in c["args"]
    assert "--pod-namespace=ci-pods" in c["args"]
    assert f"--leader-election-namespace={NAMESPACE}" in c["args"]
    _, w = container(objects, "webhook")
    assert "--watch-namespace=ci" in w["args"] and "--pod-namespace=ci-pods" in w["args"]


def test_the_jobs_namespace_defaults_to_upstream_prows_and_never_the_release_namespace():
    _, c = container(render(namespace="ci-system"), "operator")
    assert "--watch-namespace=default" in c["args"]
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as refused:
        chart.render({"namespaces": {"jobs": "ci-system"}}, name=RELEASE, namespace="ci-system", is_install=True)
    assert "must not be the release's namespace" in str(refused.value)


def test_the_testcluster_api_is_off_by_default_and_on_with_its_service_and_authentication():
    objects = render()
    _, c = container(objects, "operator")
    assert not [a for a in c["args"] if a.startswith("--compat")]
    assert not [s for s in of_kind(objects, "Service") if "testcluster-api" in s["metadata"]["name"]]
    objects = render({"testClusterApi": {"enabled": True, "pool": "gke-e2e"}})
    _, c = container(objects, "operator")
    assert "--compat-listen=0.0.0.0:8082" in c["args"]
    assert "--compat-pool=gke-e2e" in c["args"]
    assert "--compat-namespace=test-pods" in c["args"]
    assert "--compat-allow-anonymous" not in c["args"]
    service = named(objects, "Service", "-testcluster-api")
    assert service["spec"]["ports"][0]["port"] == 8082
    # Only the leader serves it: no selector, the leader writes the Endpoints.
    assert "selector" not in service["spec"]
    endpoints = named(objects, "Endpoints", "-testcluster-api")
    assert "subsets" not in endpoints, "helm leaves the leader's addresses alone"
    assert "--compat-endpoints=prow-prow-operator-testcluster-api" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert of_kind(objects, "ClusterRole")
    objects = render({"testClusterApi": {"enabled": True, "authentication": "anonymous"}})
    _, c = container(objects, "operator")
    assert "--compat-allow-anonymous" in c["args"]
    assert not [r for r in of_kind(objects, "ClusterRole") if "testcluster-api" in r["metadata"]["name"]], (
        "anonymous needs no reviews"
    )
    assert "NetworkPolicy" in notes({"testClusterApi": {"enabled": True, "authentication": "anonymous"}})


def test_settings_reach_the_binaries():
    objects = render(
        {
            "operator": {
                "timeouts": {"podPending": "3m"},
                "retention": {"terminatedPodTtl": "2h"},
                "concurrency": {"maxConcurrency": 7, "jobQueues": {"gpu": 2}},
                "podDeletionGraceSeconds": 0,
            },
            "webhook": {"deepCheck": False},
            "logging": {"level": "debug", "format": "text"},
            "kubernetesApi": {"host": "172.17.0.1", "port": 6443},
            "image": {"tag": "v9"},
        }
    )
    _, c = container(objects, "operator")
    for arg in (
        "--pod-pending-timeout=3m",
        "--terminated-pod-ttl=2h",
        "--max-concurrency=7",
        "--job-queue=gpu=2",
        "--pod-deletion-grace-seconds=0",
        "--log-format=text",
    ):
        assert arg in c["args"], arg
    _, w = container(objects, "webhook")
    assert "--job-queue=gpu=2" in w["args"], "the webhook takes the same queues"
    assert "--deep-check=false" in w["args"]
    for each in (c, w):
        env = {e["name"]: e.get("value") for e in each["env"]}
        assert env["KUBERNETES_SERVICE_HOST"] == "172.17.0.1"
        assert env["KUBERNETES_SERVICE_PORT"] == "6443"
        assert env["RUST_LOG"] == "debug"
        assert each["image"].endswith(":v9")
    _, c = container(render(), "operator")
    assert not [a for a in c["args"] if a.startswith("--pod-deletion-grace-seconds")]
    assert not [a for a in c["args"] if a.startswith("--terminated-pod-ttl")]


def test_tls_is_made_by_the_webhook_by_default():
    objects = render()
    deployment, w = container(objects, "webhook")
    for arg in (
        "--tls-secret=prow-prow-operator-webhook-tls",
        f"--tls-namespace={NAMESPACE}",
        "--tls-service=prow-prow-operator-webhook",
        "--ca-bundle-of=validatingwebhookconfiguration/prow-prow-operator,"
        "mutatingwebhookconfiguration/prow-prow-operator",
    ):
        assert arg in w["args"], arg
    assert not [a for a in w["args"] if a.startswith("--tls-cert-file")]
    assert "volumes" not in deployment["spec"]["template"]["spec"]
    # Offline (helm template, Argo CD) nothing holds the certificate: no caBundle to diff.
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert all("caBundle" not in h["clientConfig"] for h in of_kind(objects, kind)[0]["webhooks"])
    assert not [o for o in objects if o["kind"] == "Secret"], "the chart renders no certificate"


def test_tls_comes_from_a_secret_or_from_cert_manager():
    objects = render({"webhook": {"tls": {"mode": "secret", "secretName": "mine", "caBundle": "Q0E="}}})
    deployment, _ = container(objects, "webhook")
    volume = deployment["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == "mine"
    hooks = of_kind(objects, "ValidatingWebhookConfiguration")[0]["webhooks"]
    assert {h["clientConfig"]["caBundle"] for h in hooks} == {"Q0E="}
    objects = render({"webhook": {"tls": {"mode": "cert-manager"}}})
    certificate = named(objects, "Certificate", "-webhook")
    assert certificate["spec"]["dnsNames"][0] == f"prow-prow-operator-webhook.{NAMESPACE}.svc"
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        config = of_kind(objects, kind)[0]
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
            f"{NAMESPACE}/prow-prow-operator-webhook"
        )
        assert all("caBundle" not in h["clientConfig"] for h in config["webhooks"])


def test_a_service_monitor_only_when_asked():
    assert not of_kind(render(), "ServiceMonitor")
    monitors = of_kind(
        render({"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kps"}}}}),
        "ServiceMonitor",
    )
    assert len(monitors) == 2
    assert all(m["metadata"]["labels"]["release"] == "kps" for m in monitors)


def test_rendering_twice_gives_the_same_objects():
    # GitOps tools re-render on every sync: nothing may change between two renders.
    assert render() == render()


@pytest.mark.parametrize(
    "values, names",
    [
        ({"webhook": {"failurePolicy": "Sometimes"}}, "failurePolicy"),
        ({"logging": {"format": "xml"}}, "format"),
        ({"operator": {"timeouts": {"podPending": "ten minutes"}}}, "podPending"),
        ({"operator": {"replicas": -1}}, "replicas"),
        ({"namespaces": {"pods": "Not_A_Namespace"}}, "pods"),
        ({"testClusterApi": {"authentication": "basic"}}, "authentication"),
        ({"webhook": {"tls": {"mode": "self-signed-by-helm"}}}, "mode"),
        ({"operatr": {}}, "operatr"),
        ({"dashboard": {"enabled": True, "port": 9}}, "port"),
        ({"dashboard": {"replicas": -1}}, "replicas"),
    ],
)
def test_the_schema_refuses_a_wrong_value_naming_it(values, names):
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as refused:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert names in str(refused.value), str(refused.value)


def kubectl(*args, stdin=None):
    kubeconfig = os.environ["PROW_TEST_KUBECONFIG"]
    return subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"testClusterApi": {"enabled": True}},
        {"testClusterApi": {"enabled": True, "authentication": "anonymous"}},
        {"webhook": {"tls": {"mode": "secret", "caBundle": "Q0E="}}, "kubernetesApi": {"host": "172.17.0.1"}},
        {"hook": {"enabled": True, "ingress": {"enabled": True, "host": "prow.example.org"},
                  "triggers": [{"repos": ["acme"], "trusted_apps": ["dependabot"]}]}},
        {"dashboard": {"enabled": True, "logCredentialsSecret": "s3-credentials",
                       "ingress": {"enabled": True, "host": "ci.example.org"}}},
    ],
)
def test_every_rendered_object_is_accepted_by_the_api_server(values):
    if not os.environ.get("PROW_TEST_KUBECONFIG"):
        if os.environ.get("CI") == "true":
            pytest.fail("PROW_TEST_KUBECONFIG is unset under CI=true")
        pytest.skip("PROW_TEST_KUBECONFIG is unset: no API server to ask")
    suffix = uuid.uuid4().hex[:6]
    release_ns, jobs_ns, pods_ns = (f"chart-{suffix}", f"chart-{suffix}-jobs", f"chart-{suffix}-pods")
    for ns in (release_ns, jobs_ns, pods_ns):
        created = kubectl("create", "namespace", ns)
        assert created.returncode == 0, created.stderr
    try:
        values = {**values, "namespaces": {"jobs": jobs_ns, "pods": pods_ns}}
        objects = render(values, namespace=release_ns)
        # Cluster-scoped names carry the release name: unique per test.
        for o in objects:
            if o["kind"] in ("ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration",
                             "ValidatingWebhookConfiguration"):
                o["metadata"]["name"] += f"-{suffix}"
        # Offline rendering assumes a current Kubernetes; an install asks the server, whose
        # version picks the PodDisruptionBudget's API (the local API server is 1.20).
        if "policy/v1\n" not in kubectl("api-versions").stdout:
            for o in of_kind(objects, "PodDisruptionBudget"):
                o["apiVersion"] = "policy/v1beta1"
        manifest = yaml.safe_dump_all(objects)
        applied = kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest)
        assert applied.returncode == 0, applied.stderr
        assert applied.stdout.count("(server dry run)") == len(objects), applied.stdout
    finally:
        for ns in (release_ns, jobs_ns, pods_ns):
            kubectl("delete", "namespace", ns, "--wait=false")


def test_the_objects_the_operator_would_make_are_the_charts_so_uninstall_removes_them():
    objects = render()
    lease = named(objects, "Lease", "-operator")
    assert lease["metadata"]["namespace"] == NAMESPACE
    assert "spec" not in lease, "the holders' fields are left to the replicas"
    _, c = container(objects, "operator")
    assert f"--leader-election-name={lease['metadata']['name']}" in c["args"]
    budget = named(objects, "PodDisruptionBudget", "prow-job-pods")
    assert budget["metadata"]["namespace"] == "test-pods"
    # The operator finds its budget by this label, and the budget never blocks an eviction.
    assert budget["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "prow-operator"
    assert budget["spec"] == {"minAvailable": 0, "selector": {"matchLabels": {"created-by-prow": "true"}}}
    assert not of_kind(render({"operator": {"leaderElection": False}}), "Lease")


def test_decoration_settings_reach_the_operator():
    template = "http://10.0.0.1/view/{{.Spec.Job}}/{{.Status.BuildID}}"
    objects = render(
        {
            "operator": {
                "decoration": {
                    "utilityImage": "registry.example.org/prow-utils:v2",
                    "jobUrlTemplate": template,
                }
            }
        }
    )
    _, c = container(objects, "operator")
    assert "--utility-image=registry.example.org/prow-utils:v2" in c["args"]
    assert f"--job-url-template={template}" in c["args"]
    _, c = container(render(), "operator")
    assert not [a for a in c["args"] if a.startswith(("--utility-image", "--job-url-template"))]


HOOK = {"hook": {"enabled": True}}


def test_the_hook_is_off_by_default_and_on_with_least_privilege():
    assert not [o for o in render() if o["metadata"]["name"].endswith("-hook") or "-hook-" in o["metadata"]["name"]]
    objects = render(HOOK)
    deployment, c = container(objects, "hook")
    assert c["command"] == ["/prow-hook"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "prow-prow-operator-hook"
    args = c["args"]
    for arg in ("--listen=0.0.0.0:8888", "--namespace=default", "--hmac-secret-file=/etc/webhook/hmac",
                "--github-token-path=/etc/github/oauth", "--github-endpoint=https://api.github.com",
                f"--leader-election-namespace={NAMESPACE}", "--leader-election-name=prow-prow-operator-hook"):
        assert arg in args, (arg, args)
    assert not [a for a in args if a.startswith("--plugin-config")]
    service = named(objects, "Service", "-hook")
    assert service["spec"]["ports"][0]["port"] == 8888
    assert not of_kind(objects, "Ingress"), "no Ingress unless asked"
    # It may create and update ProwJobs and read JobDefinitions, never touch pods or Secrets.
    hook_rules = [rule for role, rule in rules_of(objects) if "-hook-" in role["metadata"]["name"]]
    resources = {r for rule in hook_rules for r in rule["resources"]}
    assert resources == {"prowjobs", "prowjobs/status", "jobdefinitions", "leases"}, resources
    for rule in hook_rules:
        if rule["resources"] == ["jobdefinitions"]:
            assert set(rule["verbs"]) == {"get", "list", "watch"}
        assert "delete" not in rule["verbs"]
    lease = named(objects, "Lease", "-hook")
    assert lease["metadata"]["namespace"] == NAMESPACE
    # Its pods mount the two Secrets, read-only.
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hmac"]["secret"]["secretName"] == "github-hmac"
    assert volumes["github"]["secret"]["secretName"] == "github-token"


def test_a_hook_rollout_drains_what_each_replica_took_in():
    deployment, c = container(render(HOOK), "hook")
    assert "--shutdown-delay=5s" in c["args"] and "--grace-period=60s" in c["args"], c["args"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 75
    deployment, c = container(render({"hook": {**HOOK["hook"], "gracePeriodSeconds": 120}}), "hook")
    assert "--grace-period=120s" in c["args"]
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 135


def test_the_hooks_triggers_ingress_and_github_reach_it():
    objects = render({"hook": {
        "enabled": True,
        "github": {"endpoint": "https://ghe.example.org/api/v3", "tokenSecret": {"name": "bot", "key": "token"}},
        "triggers": [{"repos": ["acme"], "trusted_apps": ["dependabot"], "only_org_members": True}],
        "ingress": {"enabled": True, "className": "nginx", "host": "prow.example.org",
                    "tls": [{"hosts": ["prow.example.org"], "secretName": "prow-tls"}]},
    }})
    _, c = container(objects, "hook")
    assert "--github-endpoint=https://ghe.example.org/api/v3" in c["args"]
    assert "--github-token-path=/etc/github/token" in c["args"]
    assert "--plugin-config=/etc/plugins/plugins.yaml" in c["args"]
    plugins = yaml.safe_load(named(objects, "ConfigMap", "-hook-plugins")["data"]["plugins.yaml"])
    assert plugins == {"triggers": [{"repos": ["acme"], "trusted_apps": ["dependabot"], "only_org_members": True}]}
    ingress = named(objects, "Ingress", "-hook")
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "prow.example.org"
    assert [p["path"] for p in rule["http"]["paths"]] == ["/hook"], "only /hook is exposed"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as refused:
        chart.render({"hook": {"enabled": True, "triggers": [{"repos": ["a"], "trusted_app": ["x"]}]}},
                     name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert "trusted_app" in str(refused.value)


def test_the_hook_authenticates_as_a_github_app_when_one_is_given():
    objects = render({"hook": {"enabled": True, "github": {"app": {"id": "4242"}}}})
    deployment, c = container(objects, "hook")
    assert "--github-app-id=4242" in c["args"]
    assert "--github-app-private-key-path=/etc/github/private-key.pem" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--github-token-path")]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["github"]["secret"]["secretName"] == "github-app"
    chart = helm.Chart.load(str(CHART))
    with pytest.raises(helm.HelmError) as refused:
        chart.render({"hook": {"enabled": True, "github": {"app": {"id": "my-app"}}}},
                     name=RELEASE, namespace=NAMESPACE, is_install=True)
    assert "id" in str(refused.value)


def test_the_hook_reports_as_check_runs_with_log_credentials_when_asked():
    objects = render({"hook": {"enabled": True, "reportAs": "checks", "logCredentialsSecret": "s3-credentials"}})
    deployment, c = container(objects, "hook")
    assert "--report-as=checks" in c["args"]
    assert "--s3-credentials-file=/etc/s3-credentials/service-account.json" in c["args"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["s3-credentials"]["secret"]["secretName"] == "s3-credentials"
    _, c = container(render(HOOK), "hook")
    assert "--report-as=statuses" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--s3-credentials-file")]


DASHBOARD = {"dashboard": {"enabled": True}}


def test_the_dashboard_is_off_by_default_and_on_reads_only_its_two_namespaces():
    assert not [o for o in render() if "-dashboard" in o["metadata"]["name"]]
    objects = render(DASHBOARD)
    deployment, c = container(objects, "dashboard")
    assert c["command"] == ["/prow-dashboard"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "prow-prow-operator-dashboard"
    for arg in ("--listen=0.0.0.0:8080", "--namespace=default", "--namespace=test-pods",
                "--pod-namespace=test-pods"):
        assert arg in c["args"], (arg, c["args"])
    assert not [a for a in c["args"] if a.startswith("--s3-credentials-file")]
    assert {p["path"] for p in (c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"])} == {"/healthz", "/readyz"}
    assert named(objects, "Service", "-dashboard")["spec"]["ports"][0]["port"] == 8080
    roles = [r for r in of_kind(objects, "Role") if r["metadata"]["name"].endswith("-dashboard")]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["default", "test-pods"]
    for role in roles:
        for rule in role["rules"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule
    pod_rules = [rule for role in roles for rule in role["rules"] if "pods" in rule["resources"]]
    assert len(pod_rules) == 1 and set(pod_rules[0]["resources"]) == {"pods", "pods/log"}
    assert not [r for r in of_kind(objects, "ClusterRole") if "dashboard" in r["metadata"]["name"]]
    assert not [o for o in of_kind(objects, "Ingress") if "dashboard" in o["metadata"]["name"]]
    assert "port-forward svc/prow-prow-operator-dashboard 8080" in notes(DASHBOARD)
    assert "port-forward" not in notes()


def test_a_dashboard_rollout_keeps_serving_until_its_endpoint_is_gone():
    _, c = container(render(DASHBOARD), "dashboard")
    assert "--shutdown-delay=5s" in c["args"], c["args"]


def test_the_dashboard_reads_build_cluster_pods_through_their_kubeconfigs_only_when_told_to():
    objects = render({"dashboard": {"enabled": True, "readBuildClusters": True}})
    _, c = container(objects, "dashboard")
    assert f"--build-cluster-namespace={NAMESPACE}" in c["args"]
    role = named(objects, "Role", "-dashboard-builds")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert {(g, r): set(rule["verbs"]) for rule in role["rules"]
            for g in rule["apiGroups"] for r in rule["resources"]} == {
        ("prow-operator.dev", "buildclusters"): {"get"}, ("", "secrets"): {"get"}}
    binding = named(objects, "RoleBinding", "-dashboard-builds")
    assert binding["subjects"][0]["name"] == "prow-prow-operator-dashboard"

    objects = render(DASHBOARD)
    _, c = container(objects, "dashboard")
    assert not [a for a in c["args"] if a.startswith("--build-cluster-namespace")]
    assert not [o for o in objects if o["metadata"]["name"].endswith("-dashboard-builds")]
    for role in of_kind(objects, "Role"):
        if "dashboard" in role["metadata"]["name"]:
            assert not [r for r in role["rules"] if "secrets" in r["resources"]], role


def test_the_dashboard_reads_stored_logs_with_mounted_credentials_and_can_have_an_ingress():
    objects = render({"namespaces": {"jobs": "ci", "pods": "ci"},
                      "dashboard": {"enabled": True, "logCredentialsSecret": "s3-credentials",
                                    "ingress": {"enabled": True, "host": "ci.example.org"}}})
    deployment, c = container(objects, "dashboard")
    assert "--s3-credentials-file=/etc/s3-credentials/service-account.json" in c["args"]
    assert [a for a in c["args"] if a.startswith("--namespace=")] == ["--namespace=ci"], "one namespace once"
    volume = deployment["spec"]["template"]["spec"]["volumes"][0]
    assert volume["secret"]["secretName"] == "s3-credentials"
    ingress = named(objects, "Ingress", "-dashboard")
    assert ingress["spec"]["rules"][0]["host"] == "ci.example.org"
    roles = [r for r in of_kind(objects, "Role") if r["metadata"]["name"].endswith("-dashboard")]
    assert len(roles) == 1
