//! The HMAC secret file of GitHub's webhook (`--hmac-secret-file`), as upstream reads it: one
//! token, or YAML keyed `org/repo`, `org` or `*`, each with a list of `{value, created_at}` so
//! that a secret is rotated by adding the new one before removing the old. The most specific key
//! present for a repository is used; every token in its list is accepted.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One token of a list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Token {
    /// The shared secret.
    pub value: String,
    /// When it was made (informational, as upstream).
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The tokens of a secret file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secrets {
    /// One token for every repository.
    Single(String),
    /// Tokens by `org/repo`, `org` and `*`.
    Keyed(BTreeMap<String, Vec<Token>>),
}

impl Secrets {
    /// Reads a secret file: a mapping must have upstream's shape (an error names what is wrong);
    /// anything else is one token, with surrounding white space taken off.
    pub fn parse(text: &str) -> Result<Secrets, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("the HMAC secret file is empty".into());
        }
        match serde_yaml::from_str::<serde_yaml::Value>(trimmed) {
            Ok(serde_yaml::Value::Mapping(_)) => {
                let keyed: BTreeMap<String, Vec<Token>> =
                    serde_yaml::from_str(trimmed).map_err(|e| {
                        format!(
                            "the HMAC secret file is YAML but not a map of org/repo, org or * to \
                             lists of {{value, created_at}}: {e}"
                        )
                    })?;
                if let Some((key, _)) = keyed
                    .iter()
                    .find(|(_, tokens)| tokens.iter().all(|t| t.value.is_empty()))
                {
                    return Err(format!("the HMAC secret file gives {key:?} no token"));
                }
                Ok(Secrets::Keyed(keyed))
            }
            _ => Ok(Secrets::Single(trimmed.to_string())),
        }
    }

    /// The tokens a delivery about `full_name` (`org/repo`, empty when the payload names no
    /// repository) may be signed with: the repository's, else its organisation's, else `*`'s.
    pub fn tokens_for(&self, full_name: &str) -> Vec<&str> {
        match self {
            Secrets::Single(token) => vec![token.as_str()],
            Secrets::Keyed(keyed) => {
                let org = full_name.split('/').next().unwrap_or_default();
                [full_name, org, "*"]
                    .iter()
                    .filter(|k| !k.is_empty())
                    .find_map(|k| keyed.get(*k))
                    .map(|tokens| {
                        tokens
                            .iter()
                            .filter(|t| !t.value.is_empty())
                            .map(|t| t.value.as_str())
                            .collect()
                    })
                    .unwrap_or_default()
            }
        }
    }
}

/// The repository a payload is about, as `org/repo`, for choosing its tokens before it is
/// trusted: only `repository.full_name` is read; empty when absent or unreadable.
pub fn payload_repository(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Payload {
        repository: Option<Repo>,
    }
    #[derive(Deserialize)]
    struct Repo {
        #[serde(default)]
        full_name: String,
    }
    serde_json::from_slice::<Payload>(body)
        .ok()
        .and_then(|p| p.repository)
        .map(|r| r.full_name)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_one_token_or_upstreams_keyed_lists() {
        let keyed = "\
'*':
- value: star
  created_at: 2020-10-02T15:00:00Z
acme:
- value: org-old
- value: org-new
acme/widgets:
- value: repo
";
        let cases: &[(&str, &str, &[&str])] = &[
            ("s3cret\n", "acme/widgets", &["s3cret"]),
            ("  s3cret  ", "", &["s3cret"]),
            (keyed, "acme/widgets", &["repo"]),
            (keyed, "acme/gadgets", &["org-old", "org-new"]),
            (keyed, "other/thing", &["star"]),
            (keyed, "", &["star"]),
            ("acme:\n- value: a\n", "other/x", &[]),
        ];
        for (file, repo, want) in cases {
            let secrets = Secrets::parse(file).unwrap();
            assert_eq!(secrets.tokens_for(repo), *want, "{file:?} for {repo:?}");
        }
    }

    #[test]
    fn a_malformed_file_is_refused_with_a_reason() {
        for (file, says) in [
            ("", "empty"),
            ("\n \n", "empty"),
            ("acme: nope\n", "not a map of org/repo"),
            ("acme:\n- created_at: x\n", "not a map"),
            ("acme:\n- value: ''\n", "gives \"acme\" no token"),
        ] {
            let err = Secrets::parse(file).unwrap_err();
            assert!(err.contains(says), "{file:?}: {err}");
        }
    }

    #[test]
    fn the_repository_is_read_from_the_payload_alone() {
        assert_eq!(
            payload_repository(br#"{"repository":{"full_name":"a/b","x":1},"y":[]}"#),
            "a/b"
        );
        assert_eq!(payload_repository(br#"{"zen":"hi"}"#), "");
        assert_eq!(payload_repository(b"not json"), "");
    }
}
