use super::*;

/// Query parameters as name-value pairs.
type Pairs = Vec<(&'static str, &'static str)>;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_cimaster_call_parses_from_its_path_and_parameters() {
    let hours = |h: u64| Duration::from_secs(h * 3600);
    let cases: Vec<(&str, Pairs, Call)> = vec![
        (
            "/getvacant",
            vec![("build", "123"), ("job", "e2e-test")],
            Call::GetVacant {
                build: "123".into(),
                job: "e2e-test".into(),
            },
        ),
        (
            "finishtest",
            vec![("cluster", "cluster-01")],
            Call::FinishTest {
                cluster: "cluster-01".into(),
            },
        ),
        (
            "/holdcluster",
            vec![("cluster", "c1"), ("name", "alice")],
            Call::HoldCluster {
                cluster: "c1".into(),
                name: "alice".into(),
                duration: None,
            },
        ),
        (
            "/holdcluster",
            vec![("cluster", "c1"), ("name", "alice"), ("duration", "2")],
            Call::HoldCluster {
                cluster: "c1".into(),
                name: "alice".into(),
                duration: Some(hours(2)),
            },
        ),
        (
            "/holdcluster",
            vec![("cluster", "c1"), ("name", "alice"), ("duration", "90m")],
            Call::HoldCluster {
                cluster: "c1".into(),
                name: "alice".into(),
                duration: Some(Duration::from_secs(5400)),
            },
        ),
        (
            "/releasecluster",
            vec![("cluster", "c1")],
            Call::ReleaseCluster {
                cluster: "c1".into(),
            },
        ),
        (
            "/addcluster",
            vec![("cluster", "c9"), ("region", "eu-west"), ("name", "bob")],
            Call::AddCluster {
                cluster: "c9".into(),
                region: "eu-west".into(),
                name: "bob".into(),
            },
        ),
        (
            "/deletecluster",
            vec![("cluster", "c9")],
            Call::DeleteCluster {
                cluster: "c9".into(),
            },
        ),
        (
            "/disablecluster",
            vec![("cluster", "c9")],
            Call::DisableCluster {
                cluster: "c9".into(),
            },
        ),
        (
            "/enablecluster",
            vec![("cluster", "c9")],
            Call::EnableCluster {
                cluster: "c9".into(),
            },
        ),
        (
            "/createcluster",
            vec![("user", "carol"), ("branch", "release-1.2")],
            Call::CreateCluster {
                user: "carol".into(),
                branch: "release-1.2".into(),
            },
        ),
    ];
    for (path, given, want) in cases {
        assert_eq!(parse(path, &params(&given)), Ok(want), "{path} {given:?}");
    }
}

#[test]
fn a_bad_call_is_told_why_with_400_and_an_unknown_one_404() {
    let cases: Vec<(&str, Pairs, u16, &str)> = vec![
        (
            "/getvacant",
            vec![("job", "e2e")],
            400,
            "needs the parameter \"build\"",
        ),
        (
            "/getvacant",
            vec![("build", " "), ("job", "e2e")],
            400,
            "\"build\"",
        ),
        (
            "/finishtest",
            vec![],
            400,
            "needs the parameter \"cluster\"",
        ),
        (
            "/finishtest",
            vec![("cluster", "Bad_Name")],
            400,
            "not a valid name",
        ),
        (
            "/holdcluster",
            vec![("cluster", "c1"), ("name", "al"), ("duration", "soon")],
            400,
            "is not a duration",
        ),
        (
            "/holdcluster",
            vec![("cluster", "c1"), ("name", "al"), ("duration", "0")],
            400,
            "longer than 0",
        ),
        ("/holdcluster", vec![("cluster", "c1")], 400, "\"name\""),
        (
            "/addcluster",
            vec![("cluster", "c1"), ("name", "al")],
            400,
            "\"region\"",
        ),
        ("/createcluster", vec![("user", "al")], 400, "\"branch\""),
        (
            "/stealcluster",
            vec![("cluster", "c1")],
            404,
            "no such call",
        ),
    ];
    for (path, given, status, says) in cases {
        let bad = parse(path, &params(&given)).expect_err(path);
        assert_eq!(bad.status, status, "{path} {given:?}: {bad}");
        assert!(bad.message.contains(says), "{path}: {bad}");
    }
}

#[test]
fn each_call_needs_the_permission_of_what_it_changes() {
    let cluster = |path: &str| {
        parse(
            path,
            &params(&[("cluster", "c1"), ("name", "a"), ("region", "r")]),
        )
        .expect(path)
    };
    for path in [
        "/finishtest",
        "/holdcluster",
        "/releasecluster",
        "/disablecluster",
        "/enablecluster",
    ] {
        let p = cluster(path).permission();
        assert_eq!(
            (p.verb, p.resource, p.name.as_deref()),
            ("update", "testclusters", Some("c1")),
            "{path}"
        );
    }
    assert_eq!(cluster("/addcluster").permission().verb, "create");
    assert_eq!(cluster("/deletecluster").permission().verb, "delete");
    let vacant = parse("/getvacant", &params(&[("build", "1"), ("job", "j")])).expect("call");
    assert_eq!(vacant.permission().name, None, "any cluster of the pool");
    let create = parse("/createcluster", &params(&[("user", "u"), ("branch", "b")])).expect("call");
    assert_eq!(
        (create.permission().resource, create.permission().group),
        ("prowjobs", "prow.k8s.io")
    );
}
