//! The `.env` file, read exactly as the Python tool read it: python-dotenv's `load_dotenv()`
//! (current release, 1.2), with interpolation on and the environment winning over the file.
//!
//! Merchants switch to this job with the `.env` they already have, so the same file must give the
//! same values, quirks included. This module is a line-by-line port of python-dotenv's
//! `parser.py` (its regular expressions become the small scanners below, each named after the
//! expression it replaces) and of `variables.py`/`resolve_variables` for `${VAR}` and
//! `${VAR:-default}`. `tests/config_reference.rs` runs a corpus of more than 200 files through
//! python-dotenv itself and through [`load`] and requires the same environment from both.
//!
//! What python-dotenv does, and so this module does:
//! * The file is opened as text: a UTF-8 BOM is dropped, CRLF and a lone CR become LF.
//! * `[export ]KEY=value`, `KEY` alone (no value: sets nothing), `# comments`, blank lines.
//! * Unquoted values end at the line's end, lose a whitespace+`#` comment and trailing blanks;
//!   `KEY= # c` is empty, `KEY=#x` is `#x`.
//! * `'…'` and `"…"` may span lines; a backslash escapes the next character. In single quotes
//!   `\\` and `\'` are decoded, in double quotes also `\"`, `\a \b \f \n \r \t \v`.
//! * A quoted value may be followed by blanks and a `#` comment, nothing else. A statement that
//!   does not parse (an unterminated quote, junk after a quote, a line without `=` and with
//!   spaces) is dropped with a warning, from where it failed to the end of that line.
//! * `${NAME}` and `${NAME:-default}` are expanded in every value, quoted or not, from the
//!   environment first, then from earlier lines; an unknown name without a default is empty.
//!   A name set to an empty value gives the empty value, not the default. Nothing else (`$NAME`,
//!   `$$`) is expanded, and an expansion's result is not expanded again.
//! * The environment wins: a key already in the environment is not taken from the file, and
//!   the last line of a repeated key is the one that counts.

use std::collections::HashMap;

/// One statement of the file: the key and its value (`None` for a bare `KEY`).
pub type Binding = (String, Option<String>);

/// What [`load`] read from a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The variables the file sets: keys already in the environment are left out.
    pub vars: HashMap<String, String>,
    /// The line of each statement that could not be parsed and was dropped.
    pub dropped_lines: Vec<usize>,
}

/// Read a `.env` file's text as `load_dotenv()` does, given the process environment.
pub fn load(text: &str, env: &HashMap<String, String>) -> Loaded {
    let (bindings, dropped_lines) = parse(text);
    let resolved = resolve(&bindings, env);
    let vars = resolved
        .into_iter()
        .filter(|(k, _)| !env.contains_key(k))
        .filter_map(|(k, v)| Some((k, v?)))
        .collect();
    Loaded {
        vars,
        dropped_lines,
    }
}

/// Python's `str.isspace()`, which is what `\s` means in python-dotenv's expressions: Unicode
/// White_Space plus the four information separators U+001C..U+001F.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `[^\S\r\n]`: whitespace other than a line break.
fn blank(c: char) -> bool {
    py_space(c) && c != '\r' && c != '\n'
}

/// The statements of a file in order, and the lines of those that did not parse.
pub fn parse(text: &str) -> (Vec<Binding>, Vec<usize>) {
    // Python's text mode: universal newlines, then python-dotenv drops a leading BOM.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut reader = Reader {
        s: text.chars().collect(),
        pos: 0,
    };
    let mut bindings = Vec::new();
    let mut dropped = Vec::new();
    while reader.pos < reader.s.len() {
        let mark = reader.pos;
        match reader.binding() {
            Ok(Some(b)) => bindings.push(b),
            Ok(None) => {}
            Err(Failed) => {
                // `_rest_of_line`, from where the statement failed.
                reader.skip_while(|c| c != '\r' && c != '\n');
                if matches!(reader.peek(), Some('\r' | '\n')) {
                    reader.pos += 1;
                }
                let line = 1 + reader.s[..mark].iter().filter(|&&c| c == '\n').count();
                let first = reader.s[mark..]
                    .iter()
                    .take_while(|c| py_space(**c))
                    .filter(|&&c| c == '\n')
                    .count();
                dropped.push(line + first);
            }
        }
    }
    (bindings, dropped)
}

/// A statement that does not parse (python-dotenv's `parser.Error`).
struct Failed;

struct Reader {
    s: Vec<char>,
    pos: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos).copied()
    }

    fn at(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    fn starts_with(&self, i: usize, word: &str) -> bool {
        word.chars()
            .enumerate()
            .all(|(n, c)| self.at(i + n) == Some(c))
    }

    /// Advance over characters matching `f`; how many.
    fn skip_while(&mut self, f: impl Fn(char) -> bool) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `parse_binding`: `Ok(None)` for a comment, blank tail or the end of the file.
    fn binding(&mut self) -> Result<Option<Binding>, Failed> {
        self.skip_while(py_space); // `_multiline_whitespace`
        if self.peek().is_none() {
            return Ok(None);
        }
        // `_export`: `(?:export[^\S\r\n]+)?`
        if self.starts_with(self.pos, "export") && self.at(self.pos + 6).is_some_and(blank) {
            self.pos += 6;
            self.skip_while(blank);
        }
        let key = self.key()?;
        self.skip_while(blank); // `_whitespace`
        let value = if self.peek() == Some('=') {
            self.pos += 1;
            let blanks = self.skip_while(blank); // `_equal_sign`
            if blanks > 0 && self.peek() == Some('#') {
                Some(String::new()) // `KEY= # comment`
            } else {
                Some(self.value()?)
            }
        } else {
            None
        };
        // `_comment`: `(?:[^\S\r\n]*#[^\r\n]*)?`
        let before = self.pos;
        self.skip_while(blank);
        if self.peek() == Some('#') {
            self.skip_while(|c| c != '\r' && c != '\n');
        } else {
            self.pos = before;
        }
        // `_end_of_line`: `[^\S\r\n]*(?:\r\n|\n|\r|$)`
        let before = self.pos;
        self.skip_while(blank);
        if self.starts_with(self.pos, "\r\n") {
            self.pos += 2;
        } else if matches!(self.peek(), Some('\r' | '\n')) {
            self.pos += 1;
        } else if self.peek().is_some() {
            self.pos = before;
            return Err(Failed);
        }
        Ok(key.map(|k| (k, value)))
    }

    /// `parse_key`: `None` when the statement is a comment.
    fn key(&mut self) -> Result<Option<String>, Failed> {
        match self.peek() {
            Some('#') => Ok(None),
            Some('\'') => {
                // `'([^']+)'`
                let start = self.pos + 1;
                let len = self.s[start..].iter().take_while(|&&c| c != '\'').count();
                if len == 0 || self.at(start + len) != Some('\'') {
                    return Err(Failed);
                }
                self.pos = start + len + 1;
                Ok(Some(self.s[start..start + len].iter().collect()))
            }
            _ => {
                // `([^=\#\s]+)`
                let start = self.pos;
                if self.skip_while(|c| c != '=' && c != '#' && !py_space(c)) == 0 {
                    return Err(Failed);
                }
                Ok(Some(self.s[start..self.pos].iter().collect()))
            }
        }
    }

    /// `parse_value`.
    fn value(&mut self) -> Result<String, Failed> {
        match self.peek() {
            Some(q @ ('\'' | '"')) => {
                // `'((?:\\.|[^'\\])*)'` (and the same with `"`), across lines.
                let start = self.pos + 1;
                let mut i = start;
                loop {
                    match self.at(i) {
                        None => return Err(Failed),
                        Some('\\') if self.at(i + 1).is_some() => i += 2,
                        Some('\\') => return Err(Failed),
                        Some(c) if c == q => break,
                        Some(_) => i += 1,
                    }
                }
                self.pos = i + 1;
                Ok(decode_escapes(&self.s[start..i], q == '"'))
            }
            None | Some('\r' | '\n') => Ok(String::new()),
            Some(_) => {
                // `([^\r\n]*)`, then `re.sub(r"\s+#.*", "", part).rstrip()`.
                let start = self.pos;
                self.skip_while(|c| c != '\r' && c != '\n');
                let part = &self.s[start..self.pos];
                let mut end = part.len();
                for i in 0..part.len() {
                    if py_space(part[i]) {
                        let run = part[i..].iter().take_while(|c| py_space(**c)).count();
                        if part.get(i + run) == Some(&'#') {
                            end = i;
                            break;
                        }
                    }
                }
                let mut value = &part[..end];
                while value.last().is_some_and(|c| py_space(*c)) {
                    value = &value[..value.len() - 1];
                }
                Ok(value.iter().collect())
            }
        }
    }
}

/// `decode_escapes`: `\\[\\']` in single quotes, `\\[\\'"abfnrtv]` in double quotes.
fn decode_escapes(raw: &[char], double: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == '\\' {
            let decoded = match raw.get(i + 1) {
                Some('\\') => Some('\\'),
                Some('\'') => Some('\''),
                Some(c) if double => match c {
                    '"' => Some('"'),
                    'a' => Some('\u{07}'),
                    'b' => Some('\u{08}'),
                    'f' => Some('\u{0c}'),
                    'n' => Some('\n'),
                    'r' => Some('\r'),
                    't' => Some('\t'),
                    'v' => Some('\u{0b}'),
                    _ => None,
                },
                _ => None,
            };
            if let Some(c) = decoded {
                out.push(c);
                i += 2;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// `resolve_variables(values, override=False)`: expands each value in file order, looking names
/// up in the environment first, then in the values resolved so far. The last binding of a key
/// wins.
pub fn resolve(
    bindings: &[Binding],
    env: &HashMap<String, String>,
) -> HashMap<String, Option<String>> {
    let mut resolved: HashMap<String, Option<String>> = HashMap::new();
    for (key, value) in bindings {
        let result = value.as_ref().map(|v| {
            expand(v, |name| match env.get(name) {
                Some(v) => Some(Some(v.clone())),
                None => resolved.get(name).cloned(),
            })
        });
        resolved.insert(key.clone(), result);
    }
    resolved
}

/// Replace each `${NAME}` / `${NAME:-default}` (`\$\{([^}:]*)(?::-([^}]*))?\}`) in `value`.
/// `lookup` gives `None` for an unknown name and `Some(None)` for a bare `KEY` (which expands
/// to the empty string, not to the default, as in python-dotenv).
fn expand(value: &str, lookup: impl Fn(&str) -> Option<Option<String>>) -> String {
    let s: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == '$' && s.get(i + 1) == Some(&'{') {
            let name_start = i + 2;
            let name_len = s[name_start..]
                .iter()
                .take_while(|&&c| c != '}' && c != ':')
                .count();
            let j = name_start + name_len;
            let name: String = s[name_start..j].iter().collect();
            let found = if s.get(j) == Some(&'}') {
                Some((None, j + 1))
            } else if s.get(j) == Some(&':') && s.get(j + 1) == Some(&'-') {
                let d_start = j + 2;
                let d_len = s[d_start..].iter().take_while(|&&c| c != '}').count();
                (s.get(d_start + d_len) == Some(&'}')).then(|| {
                    let default: String = s[d_start..d_start + d_len].iter().collect();
                    (Some(default), d_start + d_len + 1)
                })
            } else {
                None
            };
            if let Some((default, end)) = found {
                let text = match lookup(&name) {
                    Some(v) => v.unwrap_or_default(),
                    None => default.unwrap_or_default(),
                };
                out.push_str(&text);
                i = end;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, env: &[(&str, &str)]) -> HashMap<String, String> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load(text, &env).vars
    }

    #[test]
    fn values_quotes_comments_and_export() {
        let v = read(
            "# c\nexport A=1\nB = \"two words\"\nC='x#y'\nD=plain # note\nE=\nF=1\t# tab\nG= # c\n",
            &[],
        );
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "two words");
        assert_eq!(v["C"], "x#y");
        assert_eq!(v["D"], "plain");
        assert_eq!(v["E"], "");
        assert_eq!(v["F"], "1");
        assert_eq!(v["G"], "");
    }

    #[test]
    fn a_comment_with_quotes_after_a_quoted_value_is_a_comment() {
        assert_eq!(read("S=\"x\" # the \"secret\"\n", &[])["S"], "x");
    }

    #[test]
    fn escapes_are_decoded_as_python_dotenv_decodes_them() {
        let v = read(
            "A=\"pa\\\\ss\"\nB=\"ab\\tcd\"\nC='ab\\'cd'\nD='a\\nb'\n",
            &[],
        );
        assert_eq!(v["A"], "pa\\ss");
        assert_eq!(v["B"], "ab\tcd");
        assert_eq!(v["C"], "ab'cd");
        assert_eq!(v["D"], "a\\nb");
    }

    #[test]
    fn an_unterminated_quote_drops_its_line_only() {
        let (bindings, dropped) = parse("A=\"abc\nB=2\n");
        assert_eq!(bindings, vec![("B".to_string(), Some("2".to_string()))]);
        assert_eq!(dropped, vec![1]);
    }

    #[test]
    fn bom_crlf_and_lone_cr() {
        let v = read("\u{feff}A=1\r\nB=\"x\r\ny\"\rC=3", &[]);
        assert_eq!(v["A"], "1");
        assert_eq!(v["B"], "x\ny");
        assert_eq!(v["C"], "3");
    }

    #[test]
    fn interpolation_reads_the_environment_first_then_earlier_lines() {
        let v = read(
            "U=sync\nH=file\nURL=postgresql://${U}:${P:-pw}@${H}/db\nQ='${U}'\n",
            &[("H", "env")],
        );
        assert_eq!(v["URL"], "postgresql://sync:pw@env/db");
        assert_eq!(v["Q"], "sync");
        assert!(!v.contains_key("H"), "the environment wins");
    }

    #[test]
    fn a_bare_key_expands_to_empty_not_to_the_default() {
        let v = read("A\nB=${A:-d}\nC=$A${A\n", &[]);
        assert_eq!(v["B"], "");
        assert_eq!(v["C"], "$A${A");
        assert!(!v.contains_key("A"));
    }
}
