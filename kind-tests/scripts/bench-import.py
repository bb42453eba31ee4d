#!/usr/bin/env python3
"""Benchmark of `prowctl import`: a generated upstream configuration of JOBS jobs (a third each
presubmits, postsubmits and periodics, over JOBS/20 repositories, decorated with defaults, with
presets) imported ROUNDS times; prints the wall time and the peak memory of each round.

    cargo build --release --bin prowctl
    kind-tests/scripts/bench-import.py [JOBS] [ROUNDS]
"""

import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def job(kind, i, repo):
    lines = [
        f"  - name: {kind}-job-{i}",
        "    decorate: true",
        "    labels: {preset-service-account: \"true\"}",
        "    max_concurrency: 4",
    ]
    if kind == "pull":
        lines += ["    always_run: true", "    branches: [^main$, ^release-\\d+$]"]
    if kind == "post":
        lines += ["    branches: [^main$]", "    run_if_changed: '^pkg/'"]
    if kind == "ci":
        lines += [f"    interval: {1 + i % 12}h", "    extra_refs:",
                  f"    - {{org: acme, repo: {repo}, base_ref: main}}"]
    lines += [
        "    spec:",
        "      containers:",
        "      - image: prow-operator.local/builder:v1",
        f"        command: [make, test-{i}]",
        "        resources: {requests: {cpu: 2, memory: 4Gi}, limits: {memory: 4Gi}}",
    ]
    return "\n".join(lines)


def generate(directory, jobs):
    with open(os.path.join(directory, "config.yaml"), "w") as f:
        f.write(
            "plank:\n  default_decoration_configs:\n  - config:\n      timeout: 2h\n"
            "      grace_period: 15s\n      utility_images: {clonerefs: c, initupload: i, "
            "entrypoint: e, sidecar: s}\n      gcs_configuration: {bucket: logs, path_strategy: "
            "explicit}\n"
            "presets:\n- labels: {preset-service-account: \"true\"}\n  env: [{name: A, value: b}]\n"
        )
    os.makedirs(os.path.join(directory, "jobs"))
    repos = max(1, jobs // 20)
    for r in range(repos):
        repo = f"repo-{r}"
        pre, post, per = [], [], []
        for i in range(r, jobs, repos):
            (pre, post, per)[i % 3].append(i)
        with open(os.path.join(directory, "jobs", f"{repo}.yaml"), "w") as f:
            f.write(f"presubmits:\n  acme/{repo}:\n")
            f.write("\n".join(job("pull", i, repo) for i in pre) + "\n")
            f.write(f"postsubmits:\n  acme/{repo}:\n")
            f.write("\n".join(job("post", i, repo) for i in post) + "\n")
            f.write("periodics:\n")
            f.write("\n".join(job("ci", i, repo) for i in per) + "\n")


def main():
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    binary = os.path.join(ROOT, "target", "release", "prowctl")
    if not os.path.exists(binary):
        sys.exit(f"{binary} is missing: cargo build --release --bin prowctl")
    with tempfile.TemporaryDirectory() as directory:
        generate(directory, jobs)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(directory) for f in fs)
        print(f"import of {jobs} jobs ({size / 1e6:.1f} MB of upstream YAML)")
        for n in range(rounds):
            start = time.monotonic()
            out = subprocess.run(
                [binary, "import", "--config-path", os.path.join(directory, "config.yaml"),
                 "--job-config-path", os.path.join(directory, "jobs"),
                 "--output-dir", os.path.join(directory, f"out-{n}")],
                capture_output=True, text=True)
            took = time.monotonic() - start
            if out.returncode != 0:
                sys.exit(out.stderr)
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"round {n + 1}: {took:.2f} s, peak memory so far {peak:.0f} MB; "
                  f"{out.stderr.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
