//! A list response read as it arrives: each element of its `items` is handed on as soon as its
//! last byte is in, so that a list of 100,000 objects is never held whole, neither as text nor
//! parsed. kube reads a list's body into one buffer and copies it twice before it parses it:
//! for 100,000 ProwJobs (200 MB of JSON) that was 400 to 600 MB at once, above the chart's
//! memory limit.
//!
//! [`Splitter`] finds the elements' bounds (it follows strings, escapes and nesting, nothing
//! more); each element is then parsed by serde_json on its own, and what is left (the list's
//! `kind`, `apiVersion`, `metadata` and an empty `items`) is parsed at the end for the
//! resource version and continue token.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

/// Why a body is not a list.
#[derive(Debug, PartialEq, Eq)]
pub enum SplitError {
    /// A byte where a list cannot have it (an element that is not an object, a second array
    /// at the top, a bracket closing nothing), at this offset of the body.
    Unexpected { offset: u64, byte: u8 },
    /// The body ended inside a value.
    Truncated,
    /// What is left is not a list's JSON.
    Envelope(String),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unexpected { offset, byte } => write!(
                f,
                "not a list: unexpected {:?} at byte {offset}",
                char::from(*byte)
            ),
            Self::Truncated => write!(f, "not a list: the body ends inside a value"),
            Self::Envelope(e) => write!(f, "not a list: {e}"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Splits a list's body, fed in chunks, into its `items`' elements.
#[derive(Default)]
pub struct Splitter {
    /// Open brackets and braces outside strings.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Between the brackets of the top-level array (`items`, a list's only one).
    in_items: bool,
    /// Whether that array was seen.
    items_seen: bool,
    /// Inside one of its elements.
    in_element: bool,
    /// The part of an element begun in an earlier chunk.
    carried: Vec<u8>,
    /// Everything outside the elements.
    envelope: Vec<u8>,
    /// Bytes fed so far (for error offsets).
    offset: u64,
}

impl Splitter {
    /// Feeds the next `chunk`, handing each element it completes to `item` (which may fail,
    /// ending the feed with its error).
    pub fn feed<E: From<SplitError>>(
        &mut self,
        chunk: &[u8],
        mut item: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = self.in_element.then_some(0);
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            if self.in_string {
                // Most of a list's bytes are in strings: jump to the next quote or backslash.
                let from = i;
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                } else {
                    match memchr::memchr2(b'"', b'\\', &chunk[i..]) {
                        None => i = chunk.len(),
                        Some(at) => {
                            i += at;
                            if chunk[i] == b'"' {
                                self.in_string = false;
                            } else {
                                self.escaped = true;
                            }
                            i += 1;
                        }
                    }
                }
                if !self.in_element {
                    self.envelope.extend_from_slice(&chunk[from..i]);
                }
                continue;
            }
            let at = i;
            i += 1;
            if self.in_items && self.depth == 2 {
                // Between two elements of the items: each must be an object.
                match b {
                    b'{' => {
                        self.in_element = true;
                        self.depth += 1;
                        start = Some(at);
                    }
                    b']' => {
                        self.in_items = false;
                        self.depth -= 1;
                        self.envelope.push(b);
                    }
                    b',' | b' ' | b'\n' | b'\r' | b'\t' => {}
                    _ => return Err(self.unexpected(at, b).into()),
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    if self.depth == 1 && b == b'[' {
                        if self.items_seen {
                            return Err(self.unexpected(at, b).into());
                        }
                        self.items_seen = true;
                        self.in_items = true;
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Err(self.unexpected(at, b).into());
                    }
                    self.depth -= 1;
                    if self.in_element && self.depth == 2 {
                        self.in_element = false;
                        let from = start.take().unwrap_or(0);
                        if self.carried.is_empty() {
                            item(&chunk[from..=at])?;
                        } else {
                            self.carried.extend_from_slice(&chunk[from..=at]);
                            item(&self.carried)?;
                            self.carried.clear();
                        }
                        continue;
                    }
                }
                _ => {}
            }
            if !self.in_element {
                self.envelope.push(b);
            }
        }
        if let (true, Some(from)) = (self.in_element, start) {
            self.carried.extend_from_slice(&chunk[from..]);
        }
        self.offset += chunk.len() as u64;
        Ok(())
    }

    /// The list's metadata, once the whole body was fed.
    pub fn finish(self) -> Result<ListMeta, SplitError> {
        if self.depth != 0 || self.in_string {
            return Err(SplitError::Truncated);
        }
        let mut envelope: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&self.envelope)
                .map_err(|e| SplitError::Envelope(e.to_string()))?;
        if !envelope.contains_key("items") {
            return Err(SplitError::Envelope("no items".into()));
        }
        match envelope.remove("metadata") {
            None | Some(serde_json::Value::Null) => Ok(ListMeta::default()),
            Some(metadata) => serde_json::from_value(metadata)
                .map_err(|e| SplitError::Envelope(format!("metadata: {e}"))),
        }
    }

    fn unexpected(&self, at: usize, byte: u8) -> SplitError {
        SplitError::Unexpected {
            offset: self.offset + at as u64,
            byte,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// Feeds `body` in chunks of `size` bytes: the elements and the metadata.
    fn split(body: &[u8], size: usize) -> Result<(Vec<Value>, ListMeta), SplitError> {
        let mut splitter = Splitter::default();
        let mut items = Vec::new();
        for chunk in body.chunks(size.max(1)) {
            splitter.feed(chunk, |item: &[u8]| {
                items.push(serde_json::from_slice(item).expect("an element is JSON"));
                Ok::<_, SplitError>(())
            })?;
        }
        Ok((items, splitter.finish()?))
    }

    #[test]
    fn every_element_comes_out_whole_however_the_body_is_cut() {
        let items = json!([
            {"metadata": {"name": "a", "labels": {"x": "}]{["}}, "spec": {"args": ["[", "]"]}},
            {"metadata": {"name": "b\"}", "annotations": {"q": "\\\\\"{"}}, "status": {}},
            {},
            {"nested": [[{"deep": [1, 2, {"k": "v"}]}]], "s": "\u{00e9}\u{1f600}"}
        ]);
        // Keys in the API server's two orders: a typed list (metadata first) and a custom
        // resource's (sorted: items before metadata).
        let typed = format!(
            r#"{{"kind":"PodList","apiVersion":"v1","metadata":{{"resourceVersion":"42","continue":"c1"}},"items":{items}}}"#
        );
        let custom = format!(
            r#"{{"apiVersion":"prow.k8s.io/v1","items": {} ,"kind":"ProwJobList","metadata":{{"resourceVersion":"43"}}}}"#,
            serde_json::to_string_pretty(&items).unwrap()
        );
        for (body, rv, cont) in [(typed, "42", Some("c1")), (custom, "43", None)] {
            for size in [1, 2, 3, 7, 64, body.len()] {
                let (got, meta) = split(body.as_bytes(), size).expect("a list");
                assert_eq!(Value::Array(got), items, "chunks of {size}");
                assert_eq!(meta.resource_version.as_deref(), Some(rv));
                assert_eq!(meta.continue_.as_deref(), cont);
            }
        }
    }

    #[test]
    fn an_empty_list_has_its_metadata() {
        for items in ["[]", "null", "[ ]"] {
            let body =
                format!(r#"{{"kind":"L","metadata":{{"resourceVersion":"7"}},"items":{items}}}"#);
            let (got, meta) = split(body.as_bytes(), 3).expect("a list");
            assert!(got.is_empty());
            assert_eq!(meta.resource_version.as_deref(), Some("7"));
        }
    }

    #[test]
    fn what_is_not_a_list_is_refused_with_where() {
        let cases: [(&str, SplitError); 6] = [
            (
                r#"{"items":[1]}"#,
                SplitError::Unexpected {
                    offset: 10,
                    byte: b'1',
                },
            ),
            (
                r#"{"items":[[]]}"#,
                SplitError::Unexpected {
                    offset: 10,
                    byte: b'[',
                },
            ),
            (
                r#"{"items":[],"more":[]}"#,
                SplitError::Unexpected {
                    offset: 19,
                    byte: b'[',
                },
            ),
            (
                r#"{"items":[{}]}}"#,
                SplitError::Unexpected {
                    offset: 14,
                    byte: b'}',
                },
            ),
            (r#"{"items":[{"a":"b"#, SplitError::Truncated),
            (
                r#"{"kind":"Status"}"#,
                SplitError::Envelope("no items".into()),
            ),
        ];
        for (body, want) in cases {
            for size in [1, 4, body.len()] {
                assert_eq!(split(body.as_bytes(), size).unwrap_err(), want, "{body}");
            }
        }
    }

    #[test]
    fn an_element_the_caller_refuses_ends_the_feed() {
        let mut splitter = Splitter::default();
        let mut seen = 0;
        let result = splitter.feed(br#"{"items":[{"a":1},{"b":2},{"c":3}]}"#, |_: &[u8]| {
            seen += 1;
            if seen == 2 {
                Err(SplitError::Truncated)
            } else {
                Ok(())
            }
        });
        assert_eq!(result, Err(SplitError::Truncated));
        assert_eq!(seen, 2, "nothing after the refused one");
    }
}
