//! A YAML writer that produces, byte for byte, what PyYAML's
//! `safe_dump(sort_keys=False, allow_unicode=True, default_flow_style=False)` writes
//! for a top-level mapping of strings and lists of strings: the shape of an issue's
//! front matter. Upstream writes those files; rewriting one without a change must
//! leave no diff, so scalar style choice and line folding (width 80) follow PyYAML's
//! emitter (`analyze_scalar`, `choose_scalar_style`, `write_plain`,
//! `write_single_quoted`, `write_double_quoted`).

use super::resolve::resolve;

const BEST_WIDTH: usize = 80;
/// Indentation of a scalar's continuation lines inside a top-level mapping.
const SCALAR_INDENT: usize = 2;

/// A value of a front-matter key.
pub enum Value<'a> {
    Str(&'a str),
    List(&'a [String]),
}

/// Append `key: value\n` (or a block list) to `out`.
pub fn write_entry(out: &mut String, key: &str, value: Value<'_>) {
    let mut e = Emitter {
        out,
        column: 0,
        whitespace: true,
        indention: true,
    };
    e.write(key);
    e.write_indicator(":", false, false, false);
    match value {
        Value::Str(s) => e.write_scalar(s),
        Value::List([]) => e.write_indicator("[]", true, false, false),
        Value::List(items) => {
            for item in items {
                e.line_break();
                e.write_indicator("-", true, false, true);
                e.write_scalar(item);
            }
        }
    }
    e.out.push('\n');
}

struct Emitter<'o> {
    out: &'o mut String,
    column: usize,
    whitespace: bool,
    indention: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_space_or_break(c: char) -> bool {
    matches!(
        c,
        '\0' | ' ' | '\t' | '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

#[derive(PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
}

impl Emitter<'_> {
    fn write(&mut self, data: &str) {
        self.column += data.chars().count();
        self.out.push_str(data);
    }

    fn write_indicator(&mut self, ind: &str, need_ws: bool, whitespace: bool, indention: bool) {
        if !self.whitespace && need_ws {
            self.write(" ");
        }
        self.write(ind);
        self.whitespace = whitespace;
        self.indention = self.indention && indention;
    }

    fn line_break(&mut self) {
        self.out.push('\n');
        self.whitespace = true;
        self.indention = true;
        self.column = 0;
    }

    fn write_indent(&mut self) {
        let indent = SCALAR_INDENT;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.line_break();
        }
        if self.column < indent {
            self.whitespace = true;
            let pad = " ".repeat(indent - self.column);
            self.write(&pad);
        }
    }

    fn write_scalar(&mut self, s: &str) {
        match choose_style(s) {
            Style::Plain => self.write_plain(s),
            Style::Single => self.write_single_quoted(s),
            Style::Double => self.write_double_quoted(s),
        }
    }

    fn write_plain(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.whitespace {
            self.write(" ");
        }
        self.whitespace = false;
        self.indention = false;
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut start) = (false, 0);
        for end in 0..=chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end && self.column > BEST_WIDTH {
                        self.write_indent();
                        self.whitespace = false;
                        self.indention = false;
                    } else {
                        self.write(&chars[start..end].iter().collect::<String>());
                    }
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ') {
                // Plain scalars never hold breaks (analysis forbids them).
                self.write(&chars[start..end].iter().collect::<String>());
                start = end;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
            }
        }
    }

    fn write_single_quoted(&mut self, text: &str) {
        self.write_indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks, mut start) = (false, false, 0);
        for end in 0..=chars.len() {
            let ch = chars.get(end).copied();
            if spaces {
                if ch != Some(' ') {
                    if start + 1 == end
                        && self.column > BEST_WIDTH
                        && start != 0
                        && end != chars.len()
                    {
                        self.write_indent();
                    } else {
                        self.write(&chars[start..end].iter().collect::<String>());
                    }
                    start = end;
                }
            } else if breaks {
                if ch.is_none_or(|c| !is_break(c)) {
                    if chars[start] == '\n' {
                        self.line_break();
                    }
                    for &br in &chars[start..end] {
                        if br == '\n' {
                            self.line_break();
                        } else {
                            self.out.push(br);
                            self.whitespace = true;
                            self.indention = true;
                            self.column = 0;
                        }
                    }
                    self.write_indent();
                    start = end;
                }
            } else if ch.is_none_or(|c| c == ' ' || c == '\'' || is_break(c)) && start < end {
                self.write(&chars[start..end].iter().collect::<String>());
                start = end;
            }
            if ch == Some('\'') {
                self.write("''");
                start = end + 1;
            }
            if let Some(c) = ch {
                spaces = c == ' ';
                breaks = is_break(c);
            }
        }
        self.write_indicator("'", false, false, false);
    }

    fn write_double_quoted(&mut self, text: &str) {
        self.write_indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let mut start = 0;
        for end in 0..=chars.len() {
            let ch = chars.get(end).copied();
            let needs_escape = match ch {
                None => true,
                Some(c) => {
                    matches!(
                        c,
                        '"' | '\\' | '\u{85}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}'
                    ) || !(('\x20'..='\x7e').contains(&c)
                        || ('\u{a0}'..='\u{d7ff}').contains(&c)
                        || ('\u{e000}'..='\u{fffd}').contains(&c))
                }
            };
            if needs_escape {
                if start < end {
                    self.write(&chars[start..end].iter().collect::<String>());
                    start = end;
                }
                if let Some(c) = ch {
                    let esc = match c {
                        '\0' => "\\0".to_string(),
                        '\x07' => "\\a".into(),
                        '\x08' => "\\b".into(),
                        '\t' => "\\t".into(),
                        '\n' => "\\n".into(),
                        '\x0b' => "\\v".into(),
                        '\x0c' => "\\f".into(),
                        '\r' => "\\r".into(),
                        '\x1b' => "\\e".into(),
                        '"' => "\\\"".into(),
                        '\\' => "\\\\".into(),
                        '\u{85}' => "\\N".into(),
                        '\u{a0}' => "\\_".into(),
                        '\u{2028}' => "\\L".into(),
                        '\u{2029}' => "\\P".into(),
                        c if (c as u32) <= 0xff => format!("\\x{:02X}", c as u32),
                        c if (c as u32) <= 0xffff => format!("\\u{:04X}", c as u32),
                        c => format!("\\U{:08X}", c as u32),
                    };
                    self.write(&esc);
                    start = end + 1;
                }
            }
            if 0 < end
                && end + 1 < chars.len()
                && (ch == Some(' ') || start >= end)
                && self.column + end.saturating_sub(start) > BEST_WIDTH
            {
                let mut data: String = chars[start.min(end)..end].iter().collect();
                data.push('\\');
                if start < end {
                    start = end;
                }
                self.write(&data);
                self.write_indent();
                self.whitespace = false;
                self.indention = false;
                if chars[start] == ' ' {
                    self.write("\\");
                }
            }
        }
        self.write_indicator("\"", false, false, false);
    }
}

/// PyYAML's choice, with one exception: PyYAML single-quotes a string holding NEL
/// (U+0085) and then reads that NEL back as a folded space, so `"a\u{85}b"` comes
/// back as `"a b"`. floom double-quotes such a string (`"a\Nb"`), which PyYAML and
/// floom both read back unchanged.
fn choose_style(s: &str) -> Style {
    let a = analyze(s);
    if a.allow_block_plain && !s.is_empty() && resolve(s).is_none() {
        Style::Plain
    } else if a.allow_single_quoted && !s.contains('\u{85}') {
        Style::Single
    } else {
        Style::Double
    }
}

struct Analysis {
    allow_block_plain: bool,
    allow_single_quoted: bool,
}

fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            allow_block_plain: true,
            allow_single_quoted: true,
        };
    }
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break) = (false, false);
    let (mut trailing_space, mut trailing_break) = (false, false);
    let (mut break_space, mut space_break) = (false, false);
    let mut preceded_by_ws = true;
    let mut followed_by_ws = n == 1 || is_space_or_break(chars[1]);
    let (mut prev_space, mut prev_break) = (false, false);
    for (i, &ch) in chars.iter().enumerate() {
        if i == 0 {
            if "#,[]{}&*!|>'\"%@`".contains(ch) {
                block_indicators = true;
            }
            if (ch == '?' || ch == ':') && followed_by_ws {
                block_indicators = true;
            }
            if ch == '-' && followed_by_ws {
                block_indicators = true;
            }
        } else if (ch == ':' && followed_by_ws) || (ch == '#' && preceded_by_ws) {
            block_indicators = true;
        }
        if is_break(ch) {
            line_breaks = true;
        }
        if !(ch == '\n' || ('\x20'..='\x7e').contains(&ch)) {
            let printable_unicode = (ch == '\u{85}'
                || ('\u{a0}'..='\u{d7ff}').contains(&ch)
                || ('\u{e000}'..='\u{fffd}').contains(&ch)
                || ('\u{10000}'..'\u{10ffff}').contains(&ch))
                && ch != '\u{feff}';
            if !printable_unicode {
                special = true;
            }
        }
        if ch == ' ' {
            leading_space |= i == 0;
            trailing_space |= i == n - 1;
            break_space |= prev_break;
            prev_space = true;
            prev_break = false;
        } else if is_break(ch) {
            leading_break |= i == 0;
            trailing_break |= i == n - 1;
            space_break |= prev_space;
            prev_space = false;
            prev_break = true;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = is_space_or_break(ch);
        followed_by_ws = i + 2 >= n || is_space_or_break(chars[i + 2]);
    }
    let mut plain = !(leading_space || leading_break || trailing_space || trailing_break);
    let mut single = true;
    if break_space {
        plain = false;
        single = false;
    }
    if space_break || special {
        plain = false;
        single = false;
    }
    if line_breaks || block_indicators {
        plain = false;
    }
    Analysis {
        allow_block_plain: plain,
        allow_single_quoted: single,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(key: &str, v: &str) -> String {
        let mut s = String::new();
        write_entry(&mut s, key, Value::Str(v));
        s
    }

    #[test]
    fn styles_match_pyyaml() {
        assert_eq!(dump("title", "Inbox worker"), "title: Inbox worker\n");
        assert_eq!(dump("t", ""), "t: ''\n");
        assert_eq!(dump("t", "true"), "t: 'true'\n");
        assert_eq!(dump("t", "0755"), "t: '0755'\n");
        assert_eq!(
            dump("created_at", "2026-06-21T19:00:00.123456+00:00"),
            "created_at: '2026-06-21T19:00:00.123456+00:00'\n"
        );
        assert_eq!(dump("t", "it's: here"), "t: 'it''s: here'\n");
        assert_eq!(dump("t", "a\tb"), "t: \"a\\tb\"\n");
        assert_eq!(dump("t", "héllo ✓"), "t: héllo ✓\n");
        assert_eq!(dump("t", "- x"), "t: '- x'\n");
        assert_eq!(dump("t", "a #b"), "t: 'a #b'\n");
    }

    #[test]
    fn lists_are_block_at_column_zero() {
        let mut s = String::new();
        write_entry(
            &mut s,
            "labels",
            Value::List(&["a".into(), "needs-attention".into()]),
        );
        assert_eq!(s, "labels:\n- a\n- needs-attention\n");
        s.clear();
        write_entry(&mut s, "labels", Value::List(&[]));
        assert_eq!(s, "labels: []\n");
    }
}
