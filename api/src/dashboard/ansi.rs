//! A log line's ANSI escape sequences as HTML: the SGR colours and weights become `<span>`s
//! with classes (`fg-1`, `bg-4`, `b`, `i`, `u`) or, for 256 and 24-bit colours, an inline
//! colour; every other escape sequence is dropped; text is HTML-escaped. The style carries
//! from one line to the next, as a terminal's does.

use std::fmt::Write as _;

/// The current style.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Style {
    fg: Option<Colour>,
    bg: Option<Colour>,
    bold: bool,
    italic: bool,
    underline: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Colour {
    /// One of the 16 named colours (8-15 bright).
    Named(u8),
    /// A 24-bit colour (256-colour codes are turned into one).
    Rgb(u8, u8, u8),
}

impl Style {
    fn is_plain(&self) -> bool {
        *self == Style::default()
    }

    fn open(&self, out: &mut String) {
        let mut classes = Vec::new();
        let mut css = String::new();
        for (colour, side, prop) in [
            (self.fg, "fg", "color"),
            (self.bg, "bg", "background-color"),
        ] {
            match colour {
                Some(Colour::Named(n)) => classes.push(format!("{side}-{n}")),
                Some(Colour::Rgb(r, g, b)) => {
                    let _ = write!(css, "{prop}:#{r:02x}{g:02x}{b:02x};");
                }
                None => {}
            }
        }
        for (on, class) in [(self.bold, "b"), (self.italic, "i"), (self.underline, "u")] {
            if on {
                classes.push(class.to_owned());
            }
        }
        out.push_str("<span");
        if !classes.is_empty() {
            let _ = write!(out, " class=\"{}\"", classes.join(" "));
        }
        if !css.is_empty() {
            let _ = write!(out, " style=\"{css}\"");
        }
        out.push('>');
    }

    fn apply(&mut self, params: &[u16]) {
        let mut i = 0;
        if params.is_empty() {
            *self = Style::default();
        }
        while i < params.len() {
            let p = params[i];
            match p {
                0 => *self = Style::default(),
                1 => self.bold = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => self.bold = false,
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some(Colour::Named((p - 30) as u8)),
                90..=97 => self.fg = Some(Colour::Named((p - 90 + 8) as u8)),
                39 => self.fg = None,
                40..=47 => self.bg = Some(Colour::Named((p - 40) as u8)),
                100..=107 => self.bg = Some(Colour::Named((p - 100 + 8) as u8)),
                49 => self.bg = None,
                38 | 48 => {
                    let (colour, used) = extended(&params[i + 1..]);
                    if p == 38 {
                        self.fg = colour.or(self.fg);
                    } else {
                        self.bg = colour.or(self.bg);
                    }
                    i += used;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

/// `5;N` (256 colours) or `2;R;G;B` after a 38 or 48: the colour and how many parameters it used.
fn extended(rest: &[u16]) -> (Option<Colour>, usize) {
    match rest {
        [5, n, ..] => (Some(palette(*n)), 2),
        [2, r, g, b, ..] => (
            Some(Colour::Rgb(
                *r.min(&255) as u8,
                *g.min(&255) as u8,
                *b.min(&255) as u8,
            )),
            4,
        ),
        _ => (None, rest.len()),
    }
}

/// A 256-colour code as a colour: the first 16 are the named ones.
fn palette(n: u16) -> Colour {
    let n = n.min(255) as u8;
    match n {
        0..=15 => Colour::Named(n),
        16..=231 => {
            let level = |v: u8| if v == 0 { 0 } else { 55 + v * 40 };
            let v = n - 16;
            Colour::Rgb(level(v / 36), level((v / 6) % 6), level(v % 6))
        }
        _ => {
            let grey = 8 + (n - 232) * 10;
            Colour::Rgb(grey, grey, grey)
        }
    }
}

fn escape(c: char, out: &mut String) {
    match c {
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '&' => out.push_str("&amp;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c if c.is_control() && c != '\t' => {}
        c => out.push(c),
    }
}

/// Turns lines into HTML, carrying the style from line to line.
#[derive(Debug, Default)]
pub struct Painter {
    style: Style,
}

impl Painter {
    /// `line` as HTML; every span it opens is closed at its end.
    pub fn paint(&mut self, line: &str) -> String {
        let mut out = String::with_capacity(line.len() + 16);
        let mut open = false;
        if !self.style.is_plain() {
            self.style.open(&mut out);
            open = true;
        }
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '\u{1b}' {
                escape(c, &mut out);
                continue;
            }
            match chars.peek() {
                Some('[') => {
                    chars.next();
                    let mut params = String::new();
                    let mut last = None;
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            last = Some(c);
                            break;
                        }
                        params.push(c);
                    }
                    if last == Some('m') {
                        let values: Vec<u16> = params
                            .split([';', ':'])
                            .map(|p| p.parse::<u16>().unwrap_or(0))
                            .collect();
                        let values = if params.is_empty() {
                            Vec::new()
                        } else {
                            values
                        };
                        self.style.apply(&values);
                        if open {
                            out.push_str("</span>");
                            open = false;
                        }
                        if !self.style.is_plain() {
                            self.style.open(&mut out);
                            open = true;
                        }
                    }
                }
                Some(']') => {
                    // An OSC sequence (a title, a hyperlink) ends with BEL or ESC \.
                    chars.next();
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                            break;
                        }
                    }
                }
                Some(_) => {
                    chars.next();
                }
                None => {}
            }
        }
        if open {
            out.push_str("</span>");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_weights_and_resets_become_spans_and_text_is_escaped() {
        let cases = [
            ("plain <b> & \"q\"", "plain &lt;b&gt; &amp; &quot;q&quot;"),
            (
                "\x1b[31mred\x1b[0m done",
                "<span class=\"fg-1\">red</span> done",
            ),
            ("\x1b[1;92mok\x1b[m", "<span class=\"fg-10 b\">ok</span>"),
            (
                "\x1b[44;37mx\x1b[39my",
                "<span class=\"fg-7 bg-4\">x</span><span class=\"bg-4\">y</span>",
            ),
            (
                "\x1b[38;5;196mhot",
                "<span style=\"color:#ff0000;\">hot</span>",
            ),
            (
                "\x1b[48;2;1;2;3mrgb",
                "<span style=\"background-color:#010203;\">rgb</span>",
            ),
            ("\x1b[2K\x1b[1Gprogress", "progress"),
            ("\x1b]0;title\x07after", "after"),
            ("\x1b]8;;http://x\x1b\\link", "link"),
            ("bell\x07 and tab\t", "bell and tab\t"),
            ("dangling \x1b[", "dangling "),
            ("\x1b[38;5mshort", "short"),
        ];
        for (line, want) in cases {
            assert_eq!(Painter::default().paint(line), want, "{line:?}");
        }
    }

    #[test]
    fn a_style_carries_to_the_next_line_until_it_is_reset() {
        let mut painter = Painter::default();
        assert_eq!(
            painter.paint("\x1b[33mwarn"),
            "<span class=\"fg-3\">warn</span>"
        );
        assert_eq!(painter.paint("still"), "<span class=\"fg-3\">still</span>");
        assert_eq!(
            painter.paint("\x1b[0mplain"),
            "<span class=\"fg-3\"></span>plain"
        );
        assert_eq!(painter.paint("next"), "next");
    }

    #[test]
    fn the_256_colour_cube_and_greys_map_to_their_rgb_values() {
        assert_eq!(palette(1), Colour::Named(1));
        assert_eq!(palette(16), Colour::Rgb(0, 0, 0));
        assert_eq!(palette(231), Colour::Rgb(255, 255, 255));
        assert_eq!(palette(232), Colour::Rgb(8, 8, 8));
        assert_eq!(palette(999), Colour::Rgb(238, 238, 238));
    }

    /// A small deterministic generator (no dependency): xorshift.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly escape-sequence material, so sequences are cut at every place.
                b"\x1b[;0123456789mK]\x07\\<>&\"' abc\xff"[(x % 25) as usize]
            })
            .collect()
    }

    #[test]
    fn any_line_paints_to_balanced_escaped_html() {
        let mut painter = Painter::default();
        for seed in 1..2000u64 {
            let line = String::from_utf8_lossy(&bytes(seed, (seed % 97) as usize)).into_owned();
            let html = painter.paint(&line);
            assert_eq!(
                html.matches("<span").count(),
                html.matches("</span>").count(),
                "{line:?} -> {html}"
            );
            let mut parts = html.split("<span");
            let mut text = parts.next().unwrap_or_default().to_owned();
            for part in parts {
                text.push_str(part.split_once('>').map_or("", |(_, rest)| rest));
            }
            let without_spans = text.replace("</span>", "");
            assert!(
                !without_spans.contains(['<', '>', '"', '\x1b']),
                "{line:?} -> {html}"
            );
        }
    }
}
