"""The chart installed with Helm (helm-python-sdk) into the local cluster with its real node
(PROW_TEST_NODE_KUBECONFIG), running the image kind-tests/scripts/image.sh builds: the operator
and webhook pods become Ready under the chart's ServiceAccounts and RBAC, the examples are
admitted with presets injected by the webhook pod, a bad job is refused by it, the jobs run on
the node (one leasing a TestCluster), the RBAC matrix holds, an upgrade rolls the pods without
refusing an admission or rotating the certificate, and an uninstall leaves only the CRDs and
what users made.

With KIND_KUBECONFIG (a kind cluster where `kind` and Docker are present; see README) the same
tests run against it instead: the image is loaded with `kind load docker-image`.

The tests of this module run in order against one release."""

import hashlib
import hmac
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

import helm_python as helm
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "prow-operator"
EXAMPLES = CHART.parent.parent / "examples"
IMAGE = "prow-operator.local/prow-operator:" + yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
SUFFIX = uuid.uuid4().hex[:6]
RELEASE = f"po-{SUFFIX}"
FULLNAME = f"{RELEASE}-prow-operator"
NS = {"release": f"prow-system-{SUFFIX}", "jobs": f"prow-{SUFFIX}", "pods": f"test-pods-{SUFFIX}"}


def target():
    """The kubeconfig to install into, and whether it is kind; skips (fails under CI=true)."""
    kind = os.environ.get("KIND_KUBECONFIG")
    if kind:
        return kind, True
    node = os.environ.get("PROW_TEST_NODE_KUBECONFIG")
    if not node:
        if os.environ.get("CI") == "true":
            pytest.fail("PROW_TEST_NODE_KUBECONFIG is unset under CI=true")
        pytest.skip("install tests skipped: no cluster with a real node (PROW_TEST_NODE_KUBECONFIG unset)")
    return node, False


KUBECONFIG, KIND = None, False


def kubectl(*args, stdin=None, check=False, timeout=120):
    done = subprocess.run(
        ["kubectl", f"--kubeconfig={KUBECONFIG}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert done.returncode == 0, f"kubectl {' '.join(args)}: {done.stderr}"
    return done


def get(kind, name=None, namespace=None, selector=None):
    args = ["get", kind, "-o", "yaml"]
    if name:
        args.insert(2, name)
    if namespace:
        args += ["-n", namespace]
    if selector:
        args += ["-l", selector]
    done = kubectl(*args)
    if done.returncode != 0:
        return None
    return yaml.safe_load(done.stdout)


def eventually(what, check, within=180, every=1.0):
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {within}s waiting for {what} (last: {last!r})")


def in_namespaces(text):
    """An example file with its namespaces replaced by this run's."""
    text = re.sub(r"\bnamespace: prow\b", f"namespace: {NS['jobs']}", text)
    return re.sub(r"\bnamespace: test-pods\b", f"namespace: {NS['pods']}", text)


# The Secrets a user makes for prow-hook before installing it.
HOOK_HMAC, HOOK_TOKEN = "github-hmac", "github-token"


def values(**changes):
    server = urlparse(yaml.safe_load(Path(KUBECONFIG).read_text())["clusters"][0]["cluster"]["server"])
    v = {
        "namespaces": {"jobs": NS["jobs"], "pods": NS["pods"]},
        "testClusterApi": {"enabled": True},
        "logging": {"level": "info", "format": "json"},
        # prow-hook, with the Secrets the fixture makes; GitHub is an address that refuses (no
        # call may leave the machine), which only reporting would call.
        "hook": {"enabled": True, "replicas": 1, "github": {
            "endpoint": "http://127.0.0.1:9", "tokenSecret": {"name": HOOK_TOKEN, "key": "oauth"}},
            "hmacSecret": {"name": HOOK_HMAC, "key": "hmac"}},
        # prow-dashboard, read-only, on its pod's address.
        "dashboard": {"enabled": True},
    }
    if not KIND:
        # No kube-proxy beside the real node: pods reach the API server on the bridge.
        v["kubernetesApi"] = {"host": server.hostname, "port": server.port}
    v.update(changes)
    return v


@pytest.fixture(scope="module")
def release():
    global KUBECONFIG, KIND
    KUBECONFIG, KIND = target()
    if KIND:
        cluster = os.environ.get("KIND_CLUSTER", "kind")
        subprocess.run(["kind", "load", "docker-image", IMAGE, "--name", cluster], check=True)
    elif subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{IMAGE} is not built under CI=true")
        pytest.skip(f"install tests skipped: {IMAGE} is not built (kind-tests/scripts/image.sh)")
    for ns in NS.values():
        kubectl("create", "namespace", ns, check=True)
    kubectl("create", "secret", "generic", HOOK_HMAC, "-n", NS["release"], "--from-literal=hmac=s3cret", check=True)
    kubectl("create", "secret", "generic", HOOK_TOKEN, "-n", NS["release"], "--from-literal=oauth=t0ken", check=True)
    config = helm.Config(kubeconfig_path=KUBECONFIG, namespace=NS["release"])
    try:
        config.install(str(CHART), RELEASE, values(), namespace=NS["release"], wait="watcher", timeout=300)
        yield config
    finally:
        config.uninstall(RELEASE, ignore_not_found=True, wait="watcher", timeout=120)
        for ns in NS.values():
            kubectl("delete", "namespace", ns, "--wait=false")


def deployment(component):
    return get("deployment", f"{FULLNAME}-{component}", NS["release"])


def pods_of(component):
    listed = get("pods", namespace=NS["release"], selector=f"app.kubernetes.io/component={component}")
    return [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]


def hook_post(ip, headers, body):
    request = urllib.request.Request(f"http://{ip}:8888/hook", data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_both_binaries_run_as_ready_pods_under_the_charts_service_accounts(release):
    for component, replicas in (("operator", 2), ("webhook", 2), ("hook", 1), ("dashboard", 1)):
        d = deployment(component)
        assert d["status"].get("readyReplicas") == replicas, (component, d["status"])
        for pod in pods_of(component):
            assert pod["spec"]["serviceAccountName"] == f"{FULLNAME}-{component}"
            assert pod["status"]["phase"] == "Running"
    # prow-hook serves /hook on its pod's address (the bridge, reachable from here): an
    # unsigned delivery is refused, a signed one that is not acted on is acknowledged.
    hook_ip = pods_of("hook")[0]["status"]["podIP"]
    refused = hook_post(hook_ip, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d1"}, b"{}")
    assert refused[0] == 403, refused
    signature = "sha256=" + hmac.new(b"s3cret", b"{}", hashlib.sha256).hexdigest()
    taken = hook_post(hook_ip, {"X-GitHub-Event": "ping", "X-GitHub-Delivery": "d2",
                                "X-Hub-Signature-256": signature}, b"{}")
    assert taken[0] == 200 and "not acted on" in taken[1], taken
    # prow-dashboard serves its pages on its pod's address, ready once its caches are synced.
    dash_ip = pods_of("dashboard")[0]["status"]["podIP"]
    with urllib.request.urlopen(f"http://{dash_ip}:8080/", timeout=10) as page:
        assert page.status == 200 and "prow-dashboard" in page.read().decode()
    with urllib.request.urlopen(f"http://{dash_ip}:8080/pools", timeout=10) as page:
        assert page.status == 200
    # The webhook set its configurations' caBundle from the Secret it made.
    secret = get("secret", f"{FULLNAME}-webhook-tls", NS["release"])
    ca = secret["data"]["ca.crt"]
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        hooks = get(kind, FULLNAME)["webhooks"]
        assert {h["clientConfig"].get("caBundle") for h in hooks} == {ca}, kind


def test_examples_are_admitted_with_presets_and_a_bad_job_is_refused(release):
    for name in ("10-presets.yaml", "20-testclusters.yaml", "30-prowjobs.yaml"):
        applied = kubectl("apply", "-f", "-", stdin=in_namespaces((EXAMPLES / name).read_text()))
        assert applied.returncode == 0, f"{name}: {applied.stderr}"
    job = get("prowjob", "unit-passes", NS["jobs"])
    container = job["spec"]["pod_spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("GOCACHE") == "/cache/go-build", "the go-cache preset was injected"
    bad = in_namespaces((EXAMPLES / "rejected" / "bad-job.yaml").read_text())
    refused = kubectl("apply", "-n", NS["jobs"], "-f", "-", stdin=bad)
    assert refused.returncode != 0
    assert "denied the request" in refused.stderr, refused.stderr
    assert "spec.max_concurrency" in refused.stderr, refused.stderr
    assert get("prowjob", "rejected", NS["jobs"]) is None


def test_the_jobs_run_on_the_node_and_one_leases_a_test_cluster(release):
    expected = {
        "unit-passes": "success",
        "lint-fails": "failure",
        "nightly-run-1": "success",
        "nightly-run-2": "success",
        "nightly-run-3": "success",
        "e2e-leases-a-cluster": "success",
    }

    def states():
        listed = get("prowjobs", namespace=NS["jobs"])
        got = {j["metadata"]["name"]: j.get("status", {}).get("state") for j in listed["items"]}
        return got if all(got.get(n) in ("success", "failure", "error", "aborted") for n in expected) else None

    ended = eventually("the example jobs to end", states, within=300, every=2)
    assert {n: ended[n] for n in expected} == expected
    e2e = get("prowjob", "e2e-leases-a-cluster", NS["jobs"])
    pod_name = e2e["status"]["pod_name"]
    logs = kubectl("logs", "-n", NS["pods"], pod_name, check=True).stdout
    assert re.search(r"leased e2e-(eu|us)-1 in (europe-west4|us-central1)", logs), logs
    # Released when it ended: both clusters are free again.
    eventually(
        "the leased cluster to be released",
        lambda: all(
            not (c.get("status") or {}).get("lease")
            for c in get("testclusters", namespace=NS["pods"])["items"]
        ),
        within=60,
    )


SA = {c: f"system:serviceaccount:{NS['release']}:{FULLNAME}-{c}"
      for c in ("operator", "webhook", "hook", "dashboard")}


def rbac_matrix():
    """(who, verb, resource[/name][#subresource], namespace or None for cluster-wide, allowed)."""
    jobs, pods, rel = NS["jobs"], NS["pods"], NS["release"]
    calls = []
    # Every call the operator makes.
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        calls.append(("operator", verb, "prowjobs.prow.k8s.io", jobs, True))
    for verb in ("update", "patch"):
        calls.append(("operator", verb, "prowjobs.prow.k8s.io#status", jobs, True))
    for verb in ("list", "watch"):
        calls.append(("operator", verb, "presets.prow-operator.dev", jobs, True))
    calls.append(("operator", "patch", "presets.prow-operator.dev#status", jobs, True))
    for verb in ("list", "watch"):
        calls.append(("operator", verb, "jobdefinitions.prow-operator.dev", jobs, True))
    calls.append(("operator", "patch", "jobdefinitions.prow-operator.dev#status", jobs, True))
    calls.append(("operator", "create", "events.events.k8s.io", jobs, True))
    for verb in ("get", "list", "watch", "create", "delete"):
        calls.append(("operator", verb, "pods", pods, True))
    for verb in ("get", "list", "create", "update", "delete"):
        calls.append(("operator", verb, "secrets", pods, True))
    for verb in ("list", "watch", "create", "update", "patch", "delete"):
        calls.append(("operator", verb, "testclusters.prow-operator.dev", pods, True))
    calls.append(("operator", "patch", "testclusters.prow-operator.dev#status", pods, True))
    for verb in ("list", "watch"):
        calls.append(("operator", verb, "testclusterpools.prow-operator.dev", pods, True))
    calls.append(("operator", "patch", "testclusterpools.prow-operator.dev#status", pods, True))
    for verb in ("get", "list", "watch", "create"):
        calls.append(("operator", verb, "poddisruptionbudgets.policy", pods, True))
    calls.append(("operator", "create", "events.events.k8s.io", pods, True))
    for verb in ("get", "create", "update", "patch"):
        calls.append(("operator", verb, "leases.coordination.k8s.io", rel, True))
    for verb in ("get", "patch"):
        calls.append(("operator", verb, f"endpoints/{FULLNAME}-testcluster-api", rel, True))
    for verb in ("get", "list", "watch"):
        calls.append(("operator", verb, "buildclusters.prow-operator.dev", rel, True))
    calls.append(("operator", "patch", "buildclusters.prow-operator.dev#status", rel, True))
    # The BuildClusters' kubeconfig Secrets, read by name.
    calls.append(("operator", "get", "secrets", rel, True))
    calls.append(("operator", "create", "tokenreviews.authentication.k8s.io", None, True))
    calls.append(("operator", "create", "subjectaccessreviews.authorization.k8s.io", None, True))
    # Every call the webhook makes.
    for verb in ("get", "list", "watch"):
        calls.append(("webhook", verb, "presets.prow-operator.dev", jobs, True))
        calls.append(("webhook", verb, "jobdefinitions.prow-operator.dev", jobs, True))
        calls.append(("webhook", verb, "buildclusters.prow-operator.dev", rel, True))
    calls.append(("webhook", "create", "pods", pods, True))
    calls.append(("webhook", "create", "secrets", rel, True))
    for verb in ("get", "update"):
        calls.append(("webhook", verb, f"secrets/{FULLNAME}-webhook-tls", rel, True))
    for kind in ("mutatingwebhookconfigurations", "validatingwebhookconfigurations"):
        for verb in ("get", "patch"):
            calls.append(("webhook", verb, f"{kind}.admissionregistration.k8s.io/{FULLNAME}", None, True))
    # Every call prow-hook makes: runs, aborts and what was reported, definitions, its Lease.
    for verb in ("get", "list", "watch", "create", "update", "patch"):
        calls.append(("hook", verb, "prowjobs.prow.k8s.io", jobs, True))
    calls.append(("hook", "patch", "prowjobs.prow.k8s.io#status", jobs, True))
    for verb in ("get", "list", "watch"):
        calls.append(("hook", verb, "jobdefinitions.prow-operator.dev", jobs, True))
    for verb in ("get", "update", "patch"):
        calls.append(("hook", verb, f"leases.coordination.k8s.io/{FULLNAME}-hook", rel, True))
    # What prow-hook, facing the internet, must not: pods, Secrets, deleting runs, definitions.
    calls += [
        ("hook", "create", "pods", pods, False),
        ("hook", "get", "secrets", rel, False),
        ("hook", "get", "secrets", pods, False),
        ("hook", "delete", "prowjobs.prow.k8s.io", jobs, False),
        ("hook", "create", "jobdefinitions.prow-operator.dev", jobs, False),
        ("hook", "update", f"leases.coordination.k8s.io/{FULLNAME}-operator", rel, False),
        ("hook", "create", "prowjobs.prow.k8s.io", pods, False),
    ]
    # Every call prow-dashboard makes, all reads, and nothing else.
    for ns in (jobs, pods):
        for verb in ("get", "list", "watch"):
            calls.append(("dashboard", verb, "prowjobs.prow.k8s.io", ns, True))
            for kind in ("jobdefinitions", "testclusterpools", "testclusters"):
                calls.append(("dashboard", verb, f"{kind}.prow-operator.dev", ns, True))
    calls.append(("dashboard", "get", "pods", pods, True))
    calls.append(("dashboard", "get", "pods#log", pods, True))
    for verb in ("create", "update", "patch", "delete"):
        calls.append(("dashboard", verb, "prowjobs.prow.k8s.io", jobs, False))
        calls.append(("dashboard", verb, "pods", pods, False))
    calls += [
        ("dashboard", "patch", "prowjobs.prow.k8s.io#status", jobs, False),
        ("dashboard", "get", "secrets", pods, False),
        ("dashboard", "get", "secrets", rel, False),
        ("dashboard", "list", "prowjobs.prow.k8s.io", "kube-system", False),
        ("dashboard", "get", "pods", "kube-system", False),
        ("dashboard", "create", "pods#exec", pods, False),
    ]
    # Calls none may make.
    for who in ("operator", "webhook", "hook", "dashboard"):
        calls += [
            (who, "list", "secrets", None, False),  # Secrets cluster-wide
            (who, "get", "secrets", "kube-system", False),
            (who, "create", "pods", "kube-system", False),  # pods outside their namespaces
            (who, "create", "pods", rel, False),
            (who, "delete", "pods", "default", False),
            (who, "escalate", "clusterroles.rbac.authorization.k8s.io", None, False),
            (who, "bind", "clusterroles.rbac.authorization.k8s.io", None, False),
            (who, "impersonate", "users", None, False),
            (who, "create", "clusterrolebindings.rbac.authorization.k8s.io", None, False),
            (who, "*", "*", None, False),  # cluster-admin
            (who, "delete", "customresourcedefinitions.apiextensions.k8s.io", None, False),
        ]
    calls += [
        ("operator", "list", "secrets", jobs, False),
        ("operator", "list", "secrets", rel, False),
        ("operator", "update", "secrets", rel, False),
        ("webhook", "get", "secrets", pods, False),
        ("webhook", "get", "secrets/another-secret", rel, False),
        ("webhook", "list", "secrets", rel, False),
        ("webhook", "delete", "pods", pods, False),
        ("webhook", "patch", "mutatingwebhookconfigurations.admissionregistration.k8s.io/another", None, False),
        ("webhook", "update", "prowjobs.prow.k8s.io", jobs, False),
    ]
    return calls


def test_the_rbac_matrix_allows_every_call_the_binaries_make_and_nothing_they_must_not(release):
    wrong = []
    for who, verb, resource, namespace, allowed in rbac_matrix():
        scope = ["-n", namespace] if namespace else ["--all-namespaces"] if verb == "list" else []
        resource, _, subresource = resource.partition("#")
        if subresource:
            scope.append(f"--subresource={subresource}")
        answer = kubectl("auth", "can-i", verb, resource, *scope, f"--as={SA[who]}").stdout.strip()
        if (answer == "yes") != allowed:
            wrong.append(f"{who} {verb} {resource} in {namespace or 'the cluster'}: {answer}")
    assert not wrong, "\n".join(wrong)


PROBE_JOB = """apiVersion: prow.k8s.io/v1
kind: ProwJob
metadata:
  generateName: probe-
  namespace: {ns}
spec:
  type: periodic
  agent: kubernetes
  job: probe
  pod_spec:
    containers:
    - image: prow-operator.local/toolbox:v1
      command: ["true"]
"""


def test_an_upgrade_rolls_the_pods_keeps_the_certificate_and_admits_throughout(release):
    secret_before = get("secret", f"{FULLNAME}-webhook-tls", NS["release"])
    pods_before = {c: {p["metadata"]["name"] for p in pods_of(c)} for c in ("operator", "webhook")}
    outcomes, stop = [], threading.Event()

    def admit():
        job = PROBE_JOB.format(ns=NS["jobs"])
        while not stop.is_set():
            done = kubectl("create", "--dry-run=server", "-f", "-", stdin=job, timeout=30)
            outcomes.append((done.returncode, done.stderr.strip()))
            time.sleep(0.1)

    prober = threading.Thread(target=admit)
    prober.start()
    try:
        time.sleep(2)
        release.upgrade(str(CHART), RELEASE, values(logging={"level": "debug", "format": "json"}),
                        namespace=NS["release"], wait="watcher", timeout=300)

        def rolled():
            now = {c: {p["metadata"]["name"] for p in pods_of(c)} for c in ("operator", "webhook")}
            fresh = all(len(now[c]) == 2 and not (now[c] & pods_before[c]) for c in now)
            return now if fresh else None

        eventually("every pod to be replaced", rolled, within=180)
        time.sleep(2)
    finally:
        stop.set()
        prober.join()
    refused = [o for o in outcomes if o[0] != 0]
    assert len(outcomes) >= 10, "the prober ran through the rollout"
    assert not refused, f"{len(refused)} of {len(outcomes)} admissions failed: {refused[:3]}"
    for component in ("operator", "webhook"):
        container = deployment(component)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["RUST_LOG"] == "debug", "the new values reached the pods"
    secret_after = get("secret", f"{FULLNAME}-webhook-tls", NS["release"])
    assert secret_after["data"] == secret_before["data"], "the certificate was kept"
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        hooks = get(kind, FULLNAME)["webhooks"]
        assert {h["clientConfig"].get("caBundle") for h in hooks} == {secret_before["data"]["ca.crt"]}


def test_uninstall_leaves_only_the_crds_and_what_users_made(release):
    release.uninstall(RELEASE, wait="watcher", timeout=120)
    instance = f"app.kubernetes.io/instance={RELEASE}"
    for ns in NS.values():
        for kind in ("deployments", "services", "serviceaccounts", "roles", "rolebindings",
                     "poddisruptionbudgets", "endpoints", "leases", "configmaps"):
            left = get(kind, namespace=ns, selector=instance)
            assert left is not None and left["items"] == [], (ns, kind, left)
    for kind in ("clusterroles", "clusterrolebindings", "mutatingwebhookconfigurations",
                 "validatingwebhookconfigurations"):
        assert get(kind, FULLNAME) is None, kind
        assert get(kind, selector=instance)["items"] == [], kind
    # The Secret the webhook made goes with its webhook configuration (garbage collection).
    eventually("the webhook's Secret to be collected",
               lambda: get("secret", f"{FULLNAME}-webhook-tls", NS["release"]) is None, within=60)
    # Nothing else in the release namespace but what Kubernetes puts in every namespace.
    for kind in ("secrets", "configmaps", "leases", "endpoints", "services"):
        names = [o["metadata"]["name"] for o in get(kind, namespace=NS["release"])["items"]]
        names = [n for n in names if not n.startswith("default-token-") and n != "kube-root-ca.crt"]
        if kind == "secrets":
            # prow-hook's two Secrets were made by the user, before the install.
            names = [n for n in names if n not in (HOOK_HMAC, HOOK_TOKEN)]
        assert names == [], (kind, names)
    # The CRDs stay, and so do the users' objects and the jobs' pods.
    assert get("crd", "prowjobs.prow.k8s.io") is not None
    assert get("prowjob", "unit-passes", NS["jobs"]) is not None
    assert get("testcluster", "e2e-eu-1", NS["pods"]) is not None
