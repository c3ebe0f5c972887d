//! `.env` read the way dotenvy 0.15 reads it, with byte spans: which bytes form one logical line
//! (a quoted value may span several), which of those lines assign a key, and where the value sits.
//! Mirrors dotenvy's `QuotedLines` (grouping, comments) and `LineParser` (key, `export`, value), so
//! that a rewrite touches exactly the value dotenvy would load and nothing inside another's quotes.

use std::ops::Range;

/// The UTF-8 byte order mark, which dotenvy skips at the start of the file.
pub const BOM: &str = "\u{feff}";

/// A logical line that assigns a key.
#[derive(Debug)]
pub struct Assignment {
    pub key: String,
    /// The value as written (quotes and escapes included), without the whitespace and comment
    /// after it; empty (right after `=`) when there is none.
    pub value: Range<usize>,
    /// `KEY=#...`: dotenvy reads an empty value and ignores the rest, so a value put in its place
    /// needs a space before the `#` to keep it a comment.
    pub comment_glued: bool,
}

/// A quote opened on `line` (1-based) that the file never closes: dotenvy rejects the file, and
/// where its values end cannot be told.
#[derive(Debug, PartialEq, Eq)]
pub struct Unterminated {
    pub line: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Complete,
    Escape,
    StrongOpen,
    StrongOpenEscape,
    WeakOpen,
    WeakOpenEscape,
    Comment,
    WhiteSpace,
}

/// The assignments of `text`'s logical lines, in order (a leading BOM is skipped, as dotenvy does).
pub fn assignments(text: &str) -> Result<Vec<Assignment>, Unterminated> {
    let mut pos = if text.starts_with(BOM) { BOM.len() } else { 0 };
    let mut found = Vec::new();
    while pos < text.len() {
        let (content, end) = logical_line(text, pos)?;
        found.extend(assignment(text, content));
        pos = end;
    }
    Ok(found)
}

/// The logical line starting at `start`: the range of its content (line ending and a trailing
/// comment cut off) and where the next one starts.
fn logical_line(text: &str, start: usize) -> Result<(Range<usize>, usize), Unterminated> {
    let first_end = physical_end(text, start);
    if text[start..first_end].trim_start().starts_with('#') {
        return Ok((start..start, first_end));
    }
    let mut state = State::Complete;
    let mut pos = start;
    loop {
        let end = physical_end(text, pos);
        let (cut, next) = end_state(state, &text[pos..end]);
        state = next;
        match state {
            State::Comment => return Ok((start..pos + cut, end)),
            State::Complete => {
                let content = text[start..end]
                    .strip_suffix('\n')
                    .map_or(&text[start..end], |line| line.strip_suffix('\r').unwrap_or(line));
                return Ok((start..start + content.len(), end));
            }
            State::StrongOpen | State::StrongOpenEscape | State::WeakOpen | State::WeakOpenEscape
                if end == text.len() =>
            {
                return Err(Unterminated { line: text[..start].matches('\n').count() + 1 });
            }
            // Only reachable at the end of a file without a final newline; such a line is whole.
            State::Escape | State::WhiteSpace if end == text.len() => return Ok((start..end, end)),
            _ => pos = end,
        }
    }
}

/// Where the physical line starting at `pos` ends, its `\n` included.
fn physical_end(text: &str, pos: usize) -> usize {
    text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1)
}

/// dotenvy's `eval_end_state`: the state after `chunk`, and where a comment starts in it.
fn end_state(mut state: State, chunk: &str) -> (usize, State) {
    let mut last = 0;
    for (pos, c) in chunk.char_indices() {
        last = pos;
        state = match state {
            State::WhiteSpace => match c {
                '#' => return (pos, State::Comment),
                '\\' => State::Escape,
                '"' => State::WeakOpen,
                '\'' => State::StrongOpen,
                _ => State::Complete,
            },
            State::Escape => State::Complete,
            State::Complete => match c {
                c if c.is_whitespace() && c != '\n' && c != '\r' => State::WhiteSpace,
                '\\' => State::Escape,
                '"' => State::WeakOpen,
                '\'' => State::StrongOpen,
                _ => State::Complete,
            },
            State::WeakOpen => match c {
                '\\' => State::WeakOpenEscape,
                '"' => State::Complete,
                _ => State::WeakOpen,
            },
            State::WeakOpenEscape => State::WeakOpen,
            State::StrongOpen => match c {
                '\\' => State::StrongOpenEscape,
                '\'' => State::Complete,
                _ => State::StrongOpen,
            },
            State::StrongOpenEscape => State::StrongOpen,
            State::Comment => unreachable!("a comment ends the chunk"),
        };
    }
    (last, state)
}

/// dotenvy's `LineParser::parse_line` over `content`: the key and the value's span, or `None` for a
/// blank line, a comment, or a line dotenvy rejects (kept as it is).
fn assignment(text: &str, content: Range<usize>) -> Option<Assignment> {
    let line = text[content.clone()].trim_end();
    let mut cursor = Cursor { line, pos: 0 };
    cursor.skip_whitespace();
    if cursor.rest().is_empty() || cursor.rest().starts_with('#') {
        return None;
    }
    let mut key = cursor.key()?;
    cursor.skip_whitespace();
    if key == "export" && !cursor.rest().starts_with('=') {
        key = cursor.key()?;
        cursor.skip_whitespace();
    }
    cursor.rest().starts_with('=').then_some(())?;
    cursor.pos += 1;
    let after_equals = cursor.pos;
    cursor.skip_whitespace();
    let at = content.start;
    if cursor.rest().is_empty() || cursor.rest().starts_with('#') {
        let comment_glued = !cursor.rest().is_empty();
        return Some(Assignment { key, value: at + after_equals..at + after_equals, comment_glued });
    }
    Some(Assignment { key, value: at + cursor.pos..at + line.len(), comment_glued: false })
}

struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.line[self.pos..]
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn key(&mut self) -> Option<String> {
        let rest = self.rest();
        if !rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            return None;
        }
        let len =
            rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).unwrap_or(rest.len());
        self.pos += len;
        Some(rest[..len].to_owned())
    }
}

/// What dotenvy loads for a value written as `raw` (dotenvy's `parse_value`); `None` when it would
/// reject it or substitute a `$VARIABLE` into it, so the result would not be `raw`'s own text.
pub fn literal_value(raw: &str) -> Option<String> {
    let (mut strong, mut weak, mut escaped, mut expecting_end) = (false, false, false, false);
    let mut out = String::new();
    for c in raw.chars() {
        if expecting_end {
            match c {
                ' ' | '\t' => continue,
                '#' => break,
                _ => return None,
            }
        } else if escaped {
            match c {
                '\\' | '\'' | '"' | '$' | ' ' => out.push(c),
                'n' => out.push('\n'),
                _ => return None,
            }
            escaped = false;
        } else if strong {
            match c {
                '\'' => strong = false,
                _ => out.push(c),
            }
        } else if c == '$' {
            return None;
        } else if weak {
            match c {
                '"' => weak = false,
                '\\' => escaped = true,
                _ => out.push(c),
            }
        } else {
            match c {
                '\'' => strong = true,
                '"' => weak = true,
                '\\' => escaped = true,
                ' ' | '\t' => expecting_end = true,
                _ => out.push(c),
            }
        }
    }
    (!strong && !weak).then_some(out)
}

/// `value` written so that dotenvy reads it back unchanged: bare when it is made of characters
/// that neither dotenvy nor a shell treats specially (a URL's usually are), else in double quotes
/// with `\`, `"`, `$` and newlines escaped the way dotenvy reads them.
pub fn quoted_value(value: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-._~:/@%+=,".contains(c);
    if !value.is_empty() && value.chars().all(plain) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' | '"' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(text: &str) -> Vec<(String, &str)> {
        assignments(text).unwrap().into_iter().map(|a| (a.key, &text[a.value])).collect()
    }

    #[test]
    fn quoted_values_span_lines_and_hide_what_is_inside() {
        let text = "A=\"one\nDATABASE_URL=inside\n\" # c\nB='x\ny'\nC=it's\nD=x'\n";
        assert_eq!(
            assigned(text),
            vec![
                ("A".into(), "\"one\nDATABASE_URL=inside\n\""),
                ("B".into(), "'x\ny'"),
                ("C".into(), "it's\nD=x'")
            ]
        );
        assert_eq!(assignments("A=\"open\nB=1\n").unwrap_err(), Unterminated { line: 1 });
        // As in dotenvy: a backslash inside single quotes hides the next quote from the grouping.
        assert_eq!(assignments("A=1\nB='x\\'\nC=2\n").unwrap_err(), Unterminated { line: 2 });
    }

    #[test]
    fn export_comments_and_bom() {
        let text = "\u{feff}A=1\nexport\tB = 2 # note\n  # c\nexport=3\nC=#glued\nbad line\n";
        assert_eq!(
            assigned(text),
            vec![("A".into(), "1"), ("B".into(), "2"), ("export".into(), "3"), ("C".into(), "")]
        );
        let glued = assignments(text).unwrap().pop().unwrap();
        assert!(glued.comment_glued);
    }

    #[test]
    fn values_are_quoted_when_a_reader_would_change_them() {
        for value in ["postgres://u:p%40@127.0.0.1:5433/db?x=1", "a b", "p$HOME", "q\"\\'#", "l\nm", ""] {
            let written = quoted_value(value);
            assert_eq!(literal_value(&written).as_deref(), Some(value), "{written}");
        }
        assert_eq!(quoted_value("postgres://u:p@h:1/d"), "postgres://u:p@h:1/d");
    }
}
