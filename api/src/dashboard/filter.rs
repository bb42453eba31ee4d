//! The jobs page's filters, read from the URL's query (`?job=pull-*&state=failure&page=2`), and
//! its paging. A value that cannot be a filter is refused with the parameter's name and why,
//! never ignored: a page that silently showed every job for `state=faliure` would mislead.

use crate::{ProwJobState, ProwJobType};

use super::row::JobRow;

/// Rows per page when the URL does not say.
pub const DEFAULT_PER_PAGE: usize = 50;
/// Most rows a page shows.
pub const MAX_PER_PAGE: usize = 500;
/// Longest value a filter takes (a job name, a repository): a longer one is not a real name.
pub const MAX_VALUE: usize = 256;

/// A job-name pattern: with `*`, a whole-name match where `*` stands for any characters;
/// without, a part of the name (so `unit` finds `pull-acme-unit`). Case is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    parts: Vec<String>,
    anchored: bool,
}

impl NamePattern {
    /// The pattern `text` says.
    pub fn new(text: &str) -> Self {
        let lower = text.to_lowercase();
        if lower.contains('*') {
            NamePattern {
                parts: lower.split('*').map(str::to_owned).collect(),
                anchored: true,
            }
        } else {
            NamePattern {
                parts: vec![lower],
                anchored: false,
            }
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_lowercase();
        if !self.anchored {
            return name.contains(self.parts[0].as_str());
        }
        let (first, rest) = self
            .parts
            .split_first()
            .expect("split gives one part at least");
        let Some(mut left) = name.strip_prefix(first.as_str()) else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return left.is_empty();
        };
        for part in middle {
            match left.find(part.as_str()) {
                Some(at) => left = &left[at + part.len()..],
                None => return false,
            }
        }
        left.len() >= last.len() && left.ends_with(last.as_str())
    }
}

/// What the jobs page shows: its filters and its page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `job=`: the job's name ([`NamePattern`]).
    pub job: Option<NamePattern>,
    /// `state=`.
    pub state: Option<ProwJobState>,
    /// `type=`.
    pub job_type: Option<ProwJobType>,
    /// `repo=`: `org/repo`, or `org` for every repository of an organisation.
    pub repo: Option<String>,
    /// `author=`: a pull request's author (case ignored, as GitHub's logins).
    pub author: Option<String>,
    /// `pull=`: a pull request's number.
    pub pull: Option<i64>,
    /// `namespace=`: the ProwJob's namespace.
    pub namespace: Option<String>,
}

/// Which page of the matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// 1-based.
    pub number: usize,
    /// Rows on it.
    pub per_page: usize,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            number: 1,
            per_page: DEFAULT_PER_PAGE,
        }
    }
}

impl Page {
    /// Rows to skip.
    pub fn offset(&self) -> usize {
        (self.number - 1).saturating_mul(self.per_page)
    }

    /// How many pages `total` matches fill (one at least).
    pub fn count(&self, total: usize) -> usize {
        total.div_ceil(self.per_page).max(1)
    }
}

/// A query parameter the page cannot take.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {why}")]
pub struct BadParam {
    /// The parameter.
    pub param: String,
    /// Why.
    pub why: String,
}

fn bad(param: &str, why: impl Into<String>) -> BadParam {
    BadParam {
        param: param.to_owned(),
        why: why.into(),
    }
}

fn state_of(value: &str) -> Option<ProwJobState> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

fn type_of(value: &str) -> Option<ProwJobType> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

/// The filters and page of a jobs-page URL's decoded query pairs. Empty values are no filter
/// (an emptied form field); unknown parameters are ignored (links from elsewhere carry their own).
pub fn parse<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(Filter, Page), Vec<BadParam>> {
    let mut filter = Filter::default();
    let mut page = Page::default();
    let mut errors = Vec::new();
    for (key, value) in pairs {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if value.len() > MAX_VALUE {
            errors.push(bad(key, format!("longer than {MAX_VALUE} characters")));
            continue;
        }
        if value.chars().any(char::is_control) {
            errors.push(bad(key, "has control characters"));
            continue;
        }
        let number = |max: usize| -> Result<usize, BadParam> {
            match value.parse::<usize>() {
                Ok(n) if n >= 1 && n <= max => Ok(n),
                _ => Err(bad(
                    key,
                    format!("{value:?} is not a number from 1 to {max}"),
                )),
            }
        };
        match key {
            "job" => filter.job = Some(NamePattern::new(value)),
            "state" => match state_of(value) {
                Some(s) => filter.state = Some(s),
                None => errors.push(bad(
                    key,
                    format!("{value:?} is not one of triggered, pending, success, failure, aborted, error, scheduling"),
                )),
            },
            "type" => match type_of(value) {
                Some(t) => filter.job_type = Some(t),
                None => errors.push(bad(
                    key,
                    format!("{value:?} is not one of presubmit, postsubmit, periodic, batch"),
                )),
            },
            "repo" => filter.repo = Some(value.to_owned()),
            "author" => filter.author = Some(value.to_lowercase()),
            "pull" => match value.parse::<i64>() {
                Ok(n) if n > 0 => filter.pull = Some(n),
                _ => errors.push(bad(key, format!("{value:?} is not a pull request number"))),
            },
            "namespace" => filter.namespace = Some(value.to_owned()),
            "page" => match number(usize::MAX / MAX_PER_PAGE) {
                Ok(n) => page.number = n,
                Err(e) => errors.push(e),
            },
            "per_page" => match number(MAX_PER_PAGE) {
                Ok(n) => page.per_page = n,
                Err(e) => errors.push(e),
            },
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok((filter, page))
    } else {
        Err(errors)
    }
}

impl Filter {
    /// Whether `row` passes every filter.
    pub fn matches(&self, row: &JobRow) -> bool {
        self.matches_but_the_name(row) && self.job.as_ref().is_none_or(|p| p.matches(&row.job))
    }

    /// Whether `row` passes every filter but `job=` (which the index applies to job names
    /// once, not to every run).
    pub fn matches_but_the_name(&self, row: &JobRow) -> bool {
        self.state.is_none_or(|s| row.state == s)
            && self.job_type.is_none_or(|t| row.job_type == Some(t))
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| &*row.namespace == ns)
            && self.repo.as_deref().is_none_or(|repo| {
                if repo.contains('/') {
                    row.repo.eq_ignore_ascii_case(repo)
                } else {
                    row.repo
                        .split_once('/')
                        .is_some_and(|(org, _)| org.eq_ignore_ascii_case(repo))
                }
            })
            && self
                .pull
                .is_none_or(|n| row.pulls.iter().any(|p| p.number == n))
            && self
                .author
                .as_deref()
                .is_none_or(|a| row.pulls.iter().any(|p| p.author.eq_ignore_ascii_case(a)))
    }

    /// Whether any filter is set.
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::dashboard::row::PullRow;

    pub(crate) fn row(
        job: &str,
        state: ProwJobState,
        repo: &str,
        pull: Option<(i64, &str)>,
    ) -> JobRow {
        JobRow {
            namespace: Arc::from("ci"),
            name: Arc::from(format!("{job}-x")),
            job: Arc::from(job),
            job_type: Some(if pull.is_some() {
                ProwJobType::Presubmit
            } else {
                ProwJobType::Periodic
            }),
            state,
            created: 0,
            started: 0,
            pending: None,
            completed: None,
            repo: Arc::from(repo),
            repo_link: String::new(),
            base_ref: Arc::from("main"),
            base_sha: String::new(),
            base_link: String::new(),
            pulls: pull
                .map(|(number, author)| PullRow {
                    number,
                    author: Arc::from(author),
                    sha: String::new(),
                    title: String::new(),
                    link: String::new(),
                    commit_link: String::new(),
                    author_link: String::new(),
                })
                .into_iter()
                .collect(),
            description: String::new(),
            url: String::new(),
            pod_name: String::new(),
            build_id: String::new(),
            pool: None,
            test_cluster: None,
            definition: None,
            pod_namespace: Arc::from(""),
        }
    }

    #[test]
    fn name_patterns_match_parts_without_a_star_and_whole_names_with_one() {
        let cases = [
            ("unit", "pull-acme-unit", true),
            ("UNIT", "pull-acme-unit", true),
            ("unit", "pull-acme-e2e", false),
            ("pull-*-unit", "pull-acme-unit", true),
            ("pull-*-unit", "pull-acme-unit-slow", false),
            ("pull-*", "pull-", true),
            ("*-unit", "pull-acme-unit", true),
            ("*", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("**", "", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                NamePattern::new(pattern).matches(name),
                want,
                "{pattern} ~ {name}"
            );
        }
    }

    #[test]
    fn every_filter_narrows_and_all_of_them_together_must_hold() {
        let rows = [
            row(
                "pull-unit",
                ProwJobState::Failure,
                "acme/w",
                Some((7, "Alice")),
            ),
            row(
                "pull-unit",
                ProwJobState::Success,
                "acme/w",
                Some((8, "bob")),
            ),
            row(
                "pull-e2e",
                ProwJobState::Pending,
                "other/x",
                Some((7, "alice")),
            ),
            row("nightly", ProwJobState::Success, "", None),
        ];
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [usize]);
        let cases: [Case; 10] = [
            (&[], &[0, 1, 2, 3]),
            (&[("state", "success")], &[1, 3]),
            (&[("type", "periodic")], &[3]),
            (&[("repo", "acme/w")], &[0, 1]),
            (&[("repo", "ACME")], &[0, 1]),
            (&[("author", "alice")], &[0, 2]),
            (&[("pull", "7")], &[0, 2]),
            (&[("job", "pull-*")], &[0, 1, 2]),
            (
                &[("job", "pull-*"), ("author", "alice"), ("repo", "acme/w")],
                &[0],
            ),
            (&[("namespace", "elsewhere")], &[]),
        ];
        for (query, want) in cases {
            let (filter, _) = parse(query.iter().copied()).expect("parses");
            let got: Vec<usize> = (0..rows.len())
                .filter(|i| filter.matches(&rows[*i]))
                .collect();
            assert_eq!(got, want, "{query:?}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_parameter_and_why_and_empty_ones_are_no_filter() {
        let (filter, page) =
            parse([("state", ""), ("job", "  "), ("utm_source", "x")]).expect("ok");
        assert!(filter.is_empty());
        assert_eq!(page, Page::default());
        let long = "x".repeat(MAX_VALUE + 1);
        let cases: [(&str, &str, &str); 8] = [
            ("state", "faliure", "not one of"),
            ("type", "nightly", "not one of"),
            ("pull", "-3", "not a pull request number"),
            ("pull", "7; DROP TABLE", "not a pull request number"),
            ("page", "0", "from 1"),
            ("per_page", "100000", "from 1 to 500"),
            ("job", &long, "longer than"),
            ("repo", "a\u{0}b", "control characters"),
        ];
        for (key, value, why) in cases {
            let errors = parse([(key, value)]).expect_err(key);
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].param, key);
            assert!(
                errors[0].why.contains(why),
                "{key}={value:?}: {}",
                errors[0]
            );
        }
        let both = parse([("state", "x"), ("pull", "y")]).expect_err("two");
        assert_eq!(both.len(), 2, "every bad parameter is named");
    }

    #[test]
    fn pages_skip_whole_pages_and_never_count_fewer_than_one() {
        let (_, page) = parse([("page", "3"), ("per_page", "20")]).expect("ok");
        assert_eq!(page.offset(), 40);
        assert_eq!(page.count(41), 3);
        assert_eq!(page.count(0), 1);
        let (_, huge) =
            parse([("page", (usize::MAX / MAX_PER_PAGE).to_string().as_str())]).expect("ok");
        assert!(huge.offset() > 0, "no overflow");
    }
}
