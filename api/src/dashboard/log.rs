//! A log read in chunks, as storage and the pod log stream hand it over, cut into numbered
//! lines: its first lines ([`Head`]), its last ones and how many there are ([`Tail`]), a range
//! ([`Range`]) and a search ([`Search`]). Each keeps only what it returns, so a 200 MB log is
//! never held whole; a line longer than [`MAX_LINE`] is cut there (the rest is skipped, the
//! line marked), so a log without newlines cannot exhaust memory either.

use std::collections::VecDeque;

/// Longest line kept, in bytes.
pub const MAX_LINE: usize = 64 * 1024;

/// A numbered line (1-based). Its bytes may not be UTF-8; [`Line::text`] reads them lossily.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Its number, from 1.
    pub number: u64,
    /// Its bytes, without the newline (and a `\r` before it).
    pub bytes: Vec<u8>,
    /// Whether it was longer than [`MAX_LINE`] and cut.
    pub cut: bool,
}

impl Line {
    /// Its text; bytes that are not UTF-8 become U+FFFD.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }
}

/// Whether a reader wants more lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    More,
    /// It has all it needs: stop reading.
    Done,
}

/// Cuts chunks into lines.
#[derive(Debug, Default)]
pub struct Lines {
    number: u64,
    partial: Vec<u8>,
    cut: bool,
    done: bool,
}

impl Lines {
    /// Lines numbered from `first` (a window that starts inside a log).
    pub fn starting_at(first: u64) -> Self {
        Lines {
            number: first.saturating_sub(1),
            ..Default::default()
        }
    }

    /// Whether a reader said it is done.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The number of the last complete line handed over.
    pub fn count(&self) -> u64 {
        self.number
    }

    /// Hands `read` every line `chunk` completes; false once `read` said it is done.
    pub fn feed(&mut self, chunk: &[u8], read: &mut dyn FnMut(Line) -> Flow) -> bool {
        let mut rest = chunk;
        while !self.done {
            let (part, end) = match rest.iter().position(|b| *b == b'\n') {
                Some(at) => (&rest[..at], Some(at)),
                None => (rest, None),
            };
            let room = MAX_LINE.saturating_sub(self.partial.len());
            if part.len() > room {
                self.cut = true;
            }
            self.partial
                .extend_from_slice(&part[..part.len().min(room)]);
            let Some(at) = end else { break };
            self.emit(read);
            rest = &rest[at + 1..];
        }
        !self.done
    }

    /// Hands `read` the last line if the log does not end with a newline.
    pub fn finish(&mut self, read: &mut dyn FnMut(Line) -> Flow) {
        if !self.done && (!self.partial.is_empty() || self.cut) {
            self.emit(read);
        }
    }

    fn emit(&mut self, read: &mut dyn FnMut(Line) -> Flow) {
        self.number += 1;
        let mut bytes = std::mem::take(&mut self.partial);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let line = Line {
            number: self.number,
            bytes,
            cut: std::mem::take(&mut self.cut),
        };
        if read(line) == Flow::Done {
            self.done = true;
        }
    }
}

/// The first `limit` lines.
#[derive(Debug)]
pub struct Head {
    /// The lines kept.
    pub lines: Vec<Line>,
    limit: usize,
}

impl Head {
    /// Keeps the first `limit` lines.
    pub fn new(limit: usize) -> Self {
        Head {
            lines: Vec::new(),
            limit,
        }
    }

    /// Takes a line.
    pub fn take(&mut self, line: Line) -> Flow {
        if self.lines.len() < self.limit {
            self.lines.push(line);
        }
        if self.lines.len() >= self.limit {
            Flow::Done
        } else {
            Flow::More
        }
    }
}

/// The last `limit` lines, and the number of the last line (how many lines the log has).
#[derive(Debug)]
pub struct Tail {
    /// The lines kept, oldest first.
    pub lines: VecDeque<Line>,
    limit: usize,
}

impl Tail {
    /// Keeps the last `limit` lines.
    pub fn new(limit: usize) -> Self {
        Tail {
            lines: VecDeque::new(),
            limit,
        }
    }

    /// Takes a line.
    pub fn take(&mut self, line: Line) -> Flow {
        if self.limit == 0 {
            return Flow::More;
        }
        if self.lines.len() == self.limit {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
        Flow::More
    }
}

/// Lines `from..=to`.
#[derive(Debug)]
pub struct Range {
    /// The lines kept.
    pub lines: Vec<Line>,
    from: u64,
    to: u64,
}

impl Range {
    /// Keeps lines `from` to `to`, both included.
    pub fn new(from: u64, to: u64) -> Self {
        Range {
            lines: Vec::new(),
            from,
            to,
        }
    }

    /// Takes a line.
    pub fn take(&mut self, line: Line) -> Flow {
        if line.number > self.to {
            return Flow::Done;
        }
        let last = line.number == self.to;
        if line.number >= self.from {
            self.lines.push(line);
        }
        if last {
            Flow::Done
        } else {
            Flow::More
        }
    }
}

/// The lines holding a text (case ignored), the first `limit` of them, and how many in all.
#[derive(Debug)]
pub struct Search {
    /// The matching lines kept.
    pub lines: Vec<Line>,
    /// How many lines match in all.
    pub total: u64,
    limit: usize,
    needle: regex::bytes::Regex,
}

/// Longest text searched for.
pub const MAX_NEEDLE: usize = 1024;

impl Search {
    /// Looks for `text` (plain text, not a pattern); None for an empty or too long text.
    pub fn new(text: &str, limit: usize) -> Option<Self> {
        if text.is_empty() || text.len() > MAX_NEEDLE {
            return None;
        }
        let needle = regex::bytes::RegexBuilder::new(&regex::escape(text))
            .case_insensitive(true)
            .unicode(false)
            .build()
            .ok()?;
        Some(Search {
            lines: Vec::new(),
            total: 0,
            limit,
            needle,
        })
    }

    /// Takes a line.
    pub fn take(&mut self, line: Line) -> Flow {
        if self.needle.is_match(&line.bytes) {
            self.total += 1;
            if self.lines.len() < self.limit {
                self.lines.push(line);
            }
        }
        Flow::More
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> Vec<Line> {
        let mut out = Vec::new();
        let mut lines = Lines::default();
        for chunk in chunks {
            lines.feed(chunk, &mut |l| {
                out.push(l);
                Flow::More
            });
        }
        lines.finish(&mut |l| {
            out.push(l);
            Flow::More
        });
        out
    }

    fn texts(lines: &[Line]) -> Vec<String> {
        lines
            .iter()
            .map(|l| format!("{}:{}", l.number, l.text()))
            .collect()
    }

    #[test]
    fn lines_are_the_same_however_the_log_is_chunked() {
        let log = b"one\r\ntwo\n\nfour\nfive";
        let whole = texts(&lines_of(&[log]));
        assert_eq!(whole, ["1:one", "2:two", "3:", "4:four", "5:five"]);
        for size in 1..log.len() {
            let chunks: Vec<&[u8]> = log.chunks(size).collect();
            assert_eq!(texts(&lines_of(&chunks)), whole, "chunks of {size}");
        }
        assert!(lines_of(&[b""]).is_empty());
        assert_eq!(texts(&lines_of(&[b"a\n"])), ["1:a"], "no empty last line");
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_replacement_characters() {
        let got = lines_of(&[b"ok \xff\xfe end\n"]);
        assert_eq!(got[0].text(), "ok \u{fffd}\u{fffd} end");
        assert_eq!(got[0].bytes, b"ok \xff\xfe end");
    }

    #[test]
    fn a_line_longer_than_the_limit_is_cut_and_marked_and_the_next_one_is_whole() {
        let mut log = vec![b'x'; MAX_LINE * 3];
        log.extend_from_slice(b"\nnext\n");
        let got = lines_of(&log.chunks(10_000).collect::<Vec<_>>());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].bytes.len(), MAX_LINE);
        assert!(got[0].cut && !got[1].cut);
        assert_eq!(got[1].text(), "next");
    }

    #[test]
    fn head_tail_range_and_search_keep_only_what_they_return() {
        let log: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
        let run = |read: &mut dyn FnMut(Line) -> Flow| {
            let mut lines = Lines::default();
            for chunk in log.as_bytes().chunks(97) {
                if !lines.feed(chunk, read) {
                    break;
                }
            }
            lines.finish(read);
            lines.count()
        };
        let mut head = Head::new(3);
        let read = run(&mut |l| head.take(l));
        assert_eq!(texts(&head.lines), ["1:line 1", "2:line 2", "3:line 3"]);
        assert!(read < 10, "the head stops reading early: {read}");
        let mut tail = Tail::new(2);
        assert_eq!(
            run(&mut |l| tail.take(l)),
            1000,
            "the tail counts every line"
        );
        assert_eq!(
            texts(tail.lines.make_contiguous()),
            ["999:line 999", "1000:line 1000"]
        );
        let mut range = Range::new(500, 502);
        assert_eq!(
            run(&mut |l| range.take(l)),
            502,
            "a range stops after its end"
        );
        assert_eq!(
            texts(&range.lines),
            ["500:line 500", "501:line 501", "502:line 502"]
        );
        let mut search = Search::new("LINE 99", 3).expect("search");
        run(&mut |l| search.take(l));
        assert_eq!(search.total, 11, "99 and 990..=999");
        assert_eq!(
            texts(&search.lines),
            ["99:line 99", "990:line 990", "991:line 991"]
        );
        let mut dots = Search::new("(.*", 10).expect("plain text, not a pattern");
        run(&mut |l| dots.take(l));
        assert_eq!(dots.total, 0);
        assert!(Search::new("", 1).is_none());
        assert!(Search::new(&"x".repeat(MAX_NEEDLE + 1), 1).is_none());
    }

    #[test]
    fn a_window_inside_a_log_numbers_from_where_it_starts() {
        let mut got = Vec::new();
        let mut lines = Lines::starting_at(41);
        lines.feed(b"a\nb\n", &mut |l| {
            got.push(l);
            Flow::More
        });
        assert_eq!(texts(&got), ["41:a", "42:b"]);
    }

    #[test]
    fn random_logs_cut_the_same_in_any_chunks_as_a_plain_split() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..300 {
            let len = (next() % 400) as usize;
            let log: Vec<u8> = (0..len)
                .map(|_| b"ab\n\r\xff"[(next() % 5) as usize])
                .collect();
            let mut want: Vec<Vec<u8>> = log
                .split(|b| *b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
                .collect();
            if log.last() == Some(&b'\n') || log.is_empty() {
                want.pop();
            }
            let mut chunks = Vec::new();
            let mut at = 0;
            while at < log.len() {
                let n = 1 + (next() % 50) as usize;
                chunks.push(&log[at..(at + n).min(log.len())]);
                at += n;
            }
            let got: Vec<Vec<u8>> = lines_of(&chunks).into_iter().map(|l| l.bytes).collect();
            assert_eq!(got, want, "{log:?}");
        }
    }
}
