//! Alertmanager-compatible label matchers: parsing and evaluation.
//!
//! Routes and silences in alertrelay select alerts with the matcher syntax
//! operators already write in `alertmanager.yml` `matchers:` lists and in
//! `amtool`, so this module follows Alertmanager's own grammar: the classic
//! parser (`pkg/labels/parse.go`) and the newer UTF-8 parser
//! (`matcher/parse`). Where the two disagree the stricter UTF-8 rules win
//! (unquoted values stop at special characters, stray quotes and backslashes
//! are errors), except that an empty unquoted value (`foo=`) is accepted as
//! the classic parser does.
//!
//! ```text
//! list     = [ "{" ] [ matcher { "," matcher } [ "," ] ] [ "}" ]   braces balanced
//! matcher  = name op value                    whitespace allowed between tokens
//! name     = [a-zA-Z_][a-zA-Z0-9_]*  |  quoted
//! op       = "=" | "!=" | "=~" | "!~"
//! value    = quoted | unquoted | nothing
//! quoted   = '"' { any char but '"' and '\' | '\"' | '\\' | '\n' } '"'
//! unquoted = one or more chars that are neither whitespace nor any of {}!=~,\"'`
//! ```
//!
//! Evaluation matches Alertmanager too: an absent label counts as the empty
//! string, and regex values are anchored as `^(?:VALUE)$`. Error positions
//! are 0-based byte offsets into the input.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::Regex;

/// The comparison a [`Matcher`] applies to a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: the value equals the given string.
    Equal,
    /// `!=`: the value differs from the given string.
    NotEqual,
    /// `=~`: the whole value matches the given regex.
    Regex,
    /// `!~`: the whole value does not match the given regex.
    NotRegex,
}

impl MatchOp {
    /// The operator as written in matcher syntax, e.g. `"=~"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a matcher or matcher list could not be parsed or built.
///
/// Messages are meant to be shown to the operator as they are; positions are
/// 0-based byte offsets into the parsed input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// Exactly one matcher was required but the input held none.
    #[error("no matcher found in input; expected something like team=\"ops\"")]
    NoMatcher,

    /// Exactly one matcher was required but the input held several.
    #[error("expected exactly one matcher, found {count}")]
    TooManyMatchers {
        /// How many matchers the input held.
        count: usize,
    },

    /// A label name was expected but a separator or brace was found.
    #[error("expected a label name at position {pos}, found {}", Found(*.found))]
    ExpectedName {
        /// Where the name should have started.
        pos: usize,
        /// What was found instead (`None` for end of input).
        found: Option<char>,
    },

    /// An operator appeared where the label name should be.
    #[error("missing label name before the operator at position {pos}")]
    MissingName {
        /// Position of the operator.
        pos: usize,
    },

    /// An unquoted label name started with a character names cannot start with.
    #[error(
        "invalid label name start {ch:?} at position {pos}: unquoted names must match \
         [a-zA-Z_][a-zA-Z0-9_]*, put other names in double quotes"
    )]
    InvalidNameStart {
        /// Position of the offending character.
        pos: usize,
        /// The offending character.
        ch: char,
    },

    /// A quoted label name was empty (`""="x"`).
    #[error("empty quoted label name at position {pos}: label names must not be empty")]
    EmptyQuotedName {
        /// Position of the opening quote.
        pos: usize,
    },

    /// [`Matcher::new`] was given an empty label name.
    #[error("label name must not be empty")]
    EmptyName,

    /// The label name was not followed by an operator.
    #[error(
        "expected one of =, !=, =~, !~ after {} at position {pos}{}",
        Quoted(.name),
        OperatorFound(*.found)
    )]
    ExpectedOperator {
        /// The label name parsed so far.
        name: String,
        /// Where the operator should have been.
        pos: usize,
        /// What was found instead (`None` for end of input).
        found: Option<char>,
    },

    /// An unquoted value started with a reserved character.
    #[error(
        "unexpected {ch:?} at position {pos} at the start of the value for {}: \
         put values containing special characters in double quotes",
        Quoted(.name)
    )]
    InvalidValueStart {
        /// The label name of the matcher.
        name: String,
        /// Position of the offending character.
        pos: usize,
        /// The offending character.
        ch: char,
    },

    /// A quoted name or value had no closing quote.
    #[error("unterminated quoted {what} starting at position {pos}")]
    UnterminatedQuote {
        /// `"label name"` or `"value"`.
        what: &'static str,
        /// Position of the opening quote.
        pos: usize,
    },

    /// A backslash inside quotes was followed by something other than `"`, `\` or `n`.
    #[error(
        "invalid escape sequence \"\\{}\" at position {pos}: only \\\", \\\\ and \\n are allowed \
         inside quotes (write \\\\ for a literal backslash)",
        .ch.escape_debug()
    )]
    InvalidEscape {
        /// Position of the backslash.
        pos: usize,
        /// The character after the backslash.
        ch: char,
    },

    /// The input ended right after a backslash inside quotes.
    #[error(
        "unterminated escape sequence at position {pos}: a backslash must be followed by \", \\ or n"
    )]
    UnterminatedEscape {
        /// Position of the backslash.
        pos: usize,
    },

    /// Something other than `,`, `}` or the end followed a matcher's value.
    #[error(
        "unexpected {found:?} at position {pos} after the value for {}: expected ',' or the end \
         of the list (quote values that contain spaces or special characters)",
        Quoted(.name)
    )]
    ExpectedSeparator {
        /// The label name of the matcher just parsed.
        name: String,
        /// Position of the offending character.
        pos: usize,
        /// The offending character.
        found: char,
    },

    /// A `}` appeared although the input did not start with `{`.
    #[error("unexpected '}}' at position {pos}: the input does not start with '{{'")]
    UnmatchedCloseBrace {
        /// Position of the `}`.
        pos: usize,
    },

    /// The input started with `{` but ended without `}`.
    #[error("missing closing '}}' at position {pos} for the '{{' at position {open}")]
    MissingCloseBrace {
        /// Position of the opening `{`.
        open: usize,
        /// Where the `}` was expected (the end of the input).
        pos: usize,
    },

    /// Input continued after the closing `}`.
    #[error("unexpected {found:?} at position {pos} after the closing '}}'")]
    TrailingInput {
        /// Position of the first extra character.
        pos: usize,
        /// The first extra character.
        found: char,
    },

    /// The value of a `=~` or `!~` matcher is not a valid regex.
    #[error("invalid regex {} in matcher {matcher}: {reason}", Quoted(.regex))]
    InvalidRegex {
        /// The matcher in canonical form.
        matcher: String,
        /// The regex as given, without the anchoring.
        regex: String,
        /// What the regex engine objected to.
        reason: String,
    },
}

/// One label matcher such as `team="ops"` or `job=~"api|web"`.
///
/// Equality ignores the compiled regex: two matchers are equal when name,
/// operator and value are.
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    // Compiled once here so evaluating routes never re-parses; always `Some`
    // for regex operators because `new` is the only constructor.
    regex: Option<Regex>,
}

impl Matcher {
    /// Parses exactly one matcher, e.g. `team="ops"`.
    ///
    /// Like Alertmanager this accepts the list syntax as long as it holds a
    /// single matcher, so `{team="ops"}` and `team=ops,` are fine too.
    ///
    /// # Errors
    ///
    /// Any syntax or regex error from [`parse_matchers`], plus
    /// [`MatcherError::NoMatcher`] and [`MatcherError::TooManyMatchers`] when
    /// the input does not hold exactly one matcher.
    pub fn parse(input: &str) -> Result<Matcher, MatcherError> {
        let mut matchers = parse_matchers(input)?;
        match matchers.len() {
            0 | 1 => matchers.pop().ok_or(MatcherError::NoMatcher),
            count => Err(MatcherError::TooManyMatchers { count }),
        }
    }

    /// Builds a matcher from its parts, compiling the regex for `=~`/`!~`.
    ///
    /// The name may be any non-empty string; names that are not classic
    /// identifiers are quoted when displayed.
    ///
    /// # Errors
    ///
    /// [`MatcherError::EmptyName`] for an empty name and
    /// [`MatcherError::InvalidRegex`] when a regex operator's value does not
    /// compile.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
        if name.is_empty() {
            return Err(MatcherError::EmptyName);
        }
        let regex = if op.is_regex() {
            Some(compile_anchored(name, op, value)?)
        } else {
            None
        };
        Ok(Matcher {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    /// The label name this matcher looks at.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The comparison this matcher applies.
    #[must_use]
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value or regex source as written (without the anchoring).
    #[must_use]
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the label set satisfies this matcher.
    ///
    /// An absent label is treated as the empty string, as in Alertmanager:
    /// `foo=""` matches alerts without `foo`, `foo!=""` requires a non-empty
    /// `foo`, and `foo=~".*"` matches absence.
    #[must_use]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let actual = labels.get(self.name.as_str()).map_or("", String::as_str);
        match self.op {
            MatchOp::Equal => actual == self.value,
            MatchOp::NotEqual => actual != self.value,
            MatchOp::Regex => self.regex_matches(actual),
            MatchOp::NotRegex => !self.regex_matches(actual),
        }
    }

    fn regex_matches(&self, actual: &str) -> bool {
        self.regex.as_ref().is_some_and(|re| re.is_match(actual))
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Display for Matcher {
    /// Writes the canonical form `name="value"`, which [`Matcher::parse`]
    /// reads back to an equal matcher.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", Name(&self.name), self.op, Quoted(&self.value))
    }
}

impl FromStr for Matcher {
    type Err = MatcherError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matcher::parse(s)
    }
}

/// Parses a matcher list such as `{team="ops", severity=~"crit|page"}`.
///
/// Braces are optional but must be balanced, a trailing comma is allowed, and
/// empty input or `{}` yields an empty list.
///
/// # Errors
///
/// The first syntax error, with its byte position, or
/// [`MatcherError::InvalidRegex`] for a regex value that does not compile.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    Parser { src: input, pos: 0 }.parse_list()
}

/// Whether every matcher matches the label set (true for an empty slice).
#[must_use]
pub fn matches_all(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

fn compile_anchored(name: &str, op: MatchOp, value: &str) -> Result<Regex, MatcherError> {
    let to_error = |err: regex::Error| MatcherError::InvalidRegex {
        matcher: format!("{}{}{}", Name(name), op, Quoted(value)),
        regex: value.to_owned(),
        reason: regex_reason(&err),
    };
    // Alertmanager only compiles the wrapped form, so `a)|(b` slips through
    // as `^(?:a)|(b)$` and silently loses its anchoring. Checking the value
    // on its own first rejects that and reports errors against what the
    // operator actually wrote.
    Regex::new(value).map_err(to_error)?;
    Regex::new(&format!("^(?:{value})$")).map_err(to_error)
}

/// Reduces the regex crate's multi-line caret diagram to its one-line cause,
/// which reads better in logs and chat replies.
fn regex_reason(err: &regex::Error) -> String {
    match err {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("error: "))
            .map_or_else(
                || text.split_whitespace().collect::<Vec<_>>().join(" "),
                str::to_owned,
            ),
        regex::Error::CompiledTooBig(limit) => {
            format!("regex is too large (compiled size exceeds {limit} bytes)")
        }
        other => other.to_string(),
    }
}

/// Characters that end an unquoted value, as in Alertmanager's lexer
/// (`isReserved`), plus all whitespace.
fn is_reserved(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '{' | '}' | '!' | '=' | '~' | ',' | '\\' | '"' | '\'' | '`'
        )
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_name_start) && chars.all(is_name_char)
}

/// A string written in double quotes with the escapes the parser accepts.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                c => fmt::Write::write_char(f, c)?,
            }
        }
        f.write_str("\"")
    }
}

/// A label name, bare when the classic parser could read it, else quoted.
struct Name<'a>(&'a str);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_identifier(self.0) {
            f.write_str(self.0)
        } else {
            Quoted(self.0).fmt(f)
        }
    }
}

/// Describes what the parser found in error messages.
struct Found(Option<char>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(c) => write!(f, "{c:?}"),
            None => f.write_str("end of input"),
        }
    }
}

/// The tail of an "expected operator" message. A name-like character here
/// usually means the operator wrote a UTF-8 name like `service.name` without
/// quotes, so the hint says how to fix that.
struct OperatorFound(Option<char>);

impl fmt::Display for OperatorFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => Ok(()),
            Some(c) if is_reserved(c) => write!(f, ", found {c:?}"),
            Some(c) => write!(
                f,
                ", found {c:?} (label names with characters other than letters, digits and '_' \
                 must be in double quotes)"
            ),
        }
    }
}

/// Hand-written scanner: no recursion and no byte indexing, so hostile input
/// (chat commands, API calls) can neither panic it nor exhaust the stack.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn parse_list(&mut self) -> Result<Vec<Matcher>, MatcherError> {
        let mut matchers = Vec::new();
        self.skip_whitespace();
        let open = if self.peek() == Some('{') {
            let at = self.pos;
            self.bump();
            Some(at)
        } else {
            None
        };
        loop {
            // Each pass starts where a matcher may begin: after the opening
            // brace or after a comma, where the list may also end.
            self.skip_whitespace();
            match self.peek() {
                None => return self.finish_at_end(open, matchers),
                Some('}') => return self.finish_at_close_brace(open, matchers),
                Some(_) => {}
            }
            let matcher = self.parse_matcher()?;
            self.skip_whitespace();
            match self.peek() {
                None => {
                    matchers.push(matcher);
                    return self.finish_at_end(open, matchers);
                }
                Some(',') => {
                    self.bump();
                    matchers.push(matcher);
                }
                Some('}') => {
                    matchers.push(matcher);
                    return self.finish_at_close_brace(open, matchers);
                }
                Some(found) => {
                    return Err(MatcherError::ExpectedSeparator {
                        name: matcher.name,
                        pos: self.pos,
                        found,
                    })
                }
            }
        }
    }

    fn finish_at_end(
        &self,
        open: Option<usize>,
        matchers: Vec<Matcher>,
    ) -> Result<Vec<Matcher>, MatcherError> {
        match open {
            Some(open) => Err(MatcherError::MissingCloseBrace {
                open,
                pos: self.pos,
            }),
            None => Ok(matchers),
        }
    }

    fn finish_at_close_brace(
        &mut self,
        open: Option<usize>,
        matchers: Vec<Matcher>,
    ) -> Result<Vec<Matcher>, MatcherError> {
        if open.is_none() {
            return Err(MatcherError::UnmatchedCloseBrace { pos: self.pos });
        }
        self.bump();
        self.skip_whitespace();
        match self.peek() {
            None => Ok(matchers),
            Some(found) => Err(MatcherError::TrailingInput {
                pos: self.pos,
                found,
            }),
        }
    }

    fn parse_matcher(&mut self) -> Result<Matcher, MatcherError> {
        let name = self.parse_name()?;
        self.skip_whitespace();
        let op = self.parse_op(&name)?;
        self.skip_whitespace();
        let value = self.parse_value(&name)?;
        Matcher::new(&name, op, &value)
    }

    fn parse_name(&mut self) -> Result<String, MatcherError> {
        let start = self.pos;
        match self.peek() {
            Some('"') => {
                let name = self.parse_quoted("label name")?;
                if name.is_empty() {
                    return Err(MatcherError::EmptyQuotedName { pos: start });
                }
                Ok(name)
            }
            Some(c) if is_name_start(c) => Ok(self.take_while(is_name_char).to_owned()),
            Some('=' | '!') => Err(MatcherError::MissingName { pos: start }),
            found @ (None | Some(',' | '{' | '}')) => {
                Err(MatcherError::ExpectedName { pos: start, found })
            }
            Some(ch) => Err(MatcherError::InvalidNameStart { pos: start, ch }),
        }
    }

    fn parse_op(&mut self, name: &str) -> Result<MatchOp, MatcherError> {
        let start = self.pos;
        let first = self.bump();
        let second = self.peek();
        let op = match (first, second) {
            (Some('='), Some('~')) => MatchOp::Regex,
            (Some('='), _) => return Ok(MatchOp::Equal),
            (Some('!'), Some('=')) => MatchOp::NotEqual,
            (Some('!'), Some('~')) => MatchOp::NotRegex,
            (found, _) => {
                return Err(MatcherError::ExpectedOperator {
                    name: name.to_owned(),
                    pos: start,
                    found,
                })
            }
        };
        self.bump();
        Ok(op)
    }

    fn parse_value(&mut self, name: &str) -> Result<String, MatcherError> {
        match self.peek() {
            Some('"') => self.parse_quoted("value"),
            // The classic parser reads `foo=` as an empty value; keep
            // accepting it so existing configs keep loading.
            None | Some(',' | '}') => Ok(String::new()),
            Some(ch) if is_reserved(ch) => Err(MatcherError::InvalidValueStart {
                name: name.to_owned(),
                pos: self.pos,
                ch,
            }),
            Some(_) => Ok(self.take_while(|c| !is_reserved(c)).to_owned()),
        }
    }

    /// Reads a double-quoted string starting at the current `"`.
    fn parse_quoted(&mut self, what: &'static str) -> Result<String, MatcherError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let at = self.pos;
            match self.bump() {
                None => return Err(MatcherError::UnterminatedQuote { what, pos: start }),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some(ch) => return Err(MatcherError::InvalidEscape { pos: at, ch }),
                    None => return Err(MatcherError::UnterminatedEscape { pos: at }),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.bump();
        }
        self.src.get(start..self.pos).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
        match Matcher::new(name, op, value) {
            Ok(m) => m,
            Err(e) => panic!("test matcher {name}{op}{value:?} is invalid: {e}"),
        }
    }

    fn parse_ok(input: &str) -> Matcher {
        match Matcher::parse(input) {
            Ok(m) => m,
            Err(e) => panic!("{input:?} should parse, got: {e}"),
        }
    }

    fn list_ok(input: &str) -> Vec<Matcher> {
        match parse_matchers(input) {
            Ok(ms) => ms,
            Err(e) => panic!("{input:?} should parse, got: {e}"),
        }
    }

    fn parse_err(input: &str) -> String {
        match Matcher::parse(input) {
            Ok(m) => panic!("{input:?} should fail, parsed as {m}"),
            Err(e) => e.to_string(),
        }
    }

    fn list_err(input: &str) -> String {
        match parse_matchers(input) {
            Ok(ms) => panic!("{input:?} should fail, parsed {} matchers", ms.len()),
            Err(e) => e.to_string(),
        }
    }

    // ---- good input ----

    #[test]
    fn parses_each_operator() {
        assert_eq!(parse_ok(r#"job="api""#), m("job", MatchOp::Equal, "api"));
        assert_eq!(
            parse_ok(r#"job!="api""#),
            m("job", MatchOp::NotEqual, "api")
        );
        assert_eq!(
            parse_ok(r#"job=~"api.*""#),
            m("job", MatchOp::Regex, "api.*")
        );
        assert_eq!(
            parse_ok(r#"job!~"api.*""#),
            m("job", MatchOp::NotRegex, "api.*")
        );
    }

    #[test]
    fn accessors_return_parts() {
        let matcher = parse_ok(r#"severity=~"crit|page""#);
        assert_eq!(matcher.name(), "severity");
        assert_eq!(matcher.op(), MatchOp::Regex);
        assert_eq!(matcher.value(), "crit|page");
    }

    #[test]
    fn parses_quoted_and_utf8_names() {
        assert_eq!(parse_ok(r#""job"="api""#), m("job", MatchOp::Equal, "api"));
        assert_eq!(
            parse_ok(r#""service.name"!="x""#),
            m("service.name", MatchOp::NotEqual, "x")
        );
        assert_eq!(
            parse_ok(r#""服务"="支付""#),
            m("服务", MatchOp::Equal, "支付")
        );
        assert_eq!(parse_ok(r#""a\"b"="c""#), m("a\"b", MatchOp::Equal, "c"));
        assert_eq!(parse_ok(r#"_x1="v""#), m("_x1", MatchOp::Equal, "v"));
    }

    #[test]
    fn parses_escapes_in_values() {
        assert_eq!(parse_ok(r#"a="say \"hi\"""#).value(), "say \"hi\"");
        assert_eq!(parse_ok(r#"a="C:\\tmp""#).value(), "C:\\tmp");
        assert_eq!(parse_ok(r#"a="line1\nline2""#).value(), "line1\nline2");
        assert_eq!(parse_ok(r#"a=~"\\d+""#).value(), "\\d+");
        // Literal control characters are kept as they are, as the classic
        // parser does.
        assert_eq!(parse_ok("a=\"x\ty\"").value(), "x\ty");
    }

    #[test]
    fn allows_whitespace_around_tokens() {
        let want = m("job", MatchOp::NotRegex, "a b");
        assert_eq!(parse_ok(r#"  job  !~  "a b"  "#), want);
        assert_eq!(parse_ok("\tjob\n!~\r\n\"a b\"\n"), want);
        assert_eq!(parse_ok("job\u{3000}!~\u{a0}\"a b\""), want);
    }

    #[test]
    fn parses_utf8_values() {
        assert_eq!(parse_ok(r#"team="运维团队""#).value(), "运维团队");
        assert_eq!(parse_ok(r#"mood="🔥 on fire 🚒""#).value(), "🔥 on fire 🚒");
        assert_eq!(parse_ok("team=运维").value(), "运维");
        assert_eq!(parse_ok("mood=🙂bar").value(), "🙂bar");
    }

    #[test]
    fn parses_unquoted_values() {
        assert_eq!(parse_ok("job=api"), m("job", MatchOp::Equal, "api"));
        assert_eq!(parse_ok("job=~[a-z]+"), m("job", MatchOp::Regex, "[a-z]+"));
        assert_eq!(
            parse_ok("job=~api|web"),
            m("job", MatchOp::Regex, "api|web")
        );
        assert_eq!(
            parse_ok("instance=host-1.example.com:9100/metrics"),
            m(
                "instance",
                MatchOp::Equal,
                "host-1.example.com:9100/metrics"
            )
        );
    }

    #[test]
    fn parses_empty_values() {
        assert_eq!(parse_ok(r#"foo="""#), m("foo", MatchOp::Equal, ""));
        assert_eq!(parse_ok("foo="), m("foo", MatchOp::Equal, ""));
        assert_eq!(parse_ok("foo!= "), m("foo", MatchOp::NotEqual, ""));
        assert_eq!(parse_ok("{foo=~}"), m("foo", MatchOp::Regex, ""));
        assert_eq!(
            list_ok("foo=,bar=baz"),
            vec![
                m("foo", MatchOp::Equal, ""),
                m("bar", MatchOp::Equal, "baz")
            ]
        );
    }

    #[test]
    fn parses_lists_with_and_without_braces() {
        let want = vec![m("a", MatchOp::Equal, "b"), m("c", MatchOp::Regex, "d.*")];
        assert_eq!(list_ok(r#"{a="b", c=~"d.*"}"#), want);
        assert_eq!(list_ok(r#"a="b", c=~"d.*""#), want);
        assert_eq!(list_ok(r#"{a="b",c=~"d.*",}"#), want);
        assert_eq!(list_ok(r#"a="b", c=~"d.*","#), want);
        assert_eq!(list_ok(" { a = b , c =~ d.* , } "), want);
        assert_eq!(list_ok("a=b,\n  c=~d.*"), want);
    }

    #[test]
    fn parses_empty_lists() {
        assert!(list_ok("").is_empty());
        assert!(list_ok("   ").is_empty());
        assert!(list_ok("{}").is_empty());
        assert!(list_ok(" { } ").is_empty());
    }

    #[test]
    fn keeps_separators_inside_quotes() {
        assert_eq!(
            list_ok(r#"{a="x, y}", b="{z=1}"}"#),
            vec![
                m("a", MatchOp::Equal, "x, y}"),
                m("b", MatchOp::Equal, "{z=1}")
            ]
        );
    }

    #[test]
    fn single_parse_accepts_list_syntax_with_one_matcher() {
        let want = m("a", MatchOp::Equal, "b");
        assert_eq!(parse_ok("{a=b}"), want);
        assert_eq!(parse_ok("a=b,"), want);
        assert_eq!(parse_ok("{a=\"b\",}"), want);
        assert_eq!("a=b".parse::<Matcher>(), Ok(want));
    }

    // ---- bad input ----

    #[test]
    fn rejects_missing_operator() {
        assert_eq!(
            parse_err("team"),
            r#"expected one of =, !=, =~, !~ after "team" at position 4"#
        );
        assert_eq!(
            parse_err(r#"team "ops""#),
            r#"expected one of =, !=, =~, !~ after "team" at position 5, found '"'"#
        );
        assert_eq!(
            parse_err("team!ops"),
            r#"expected one of =, !=, =~, !~ after "team" at position 4, found '!'"#
        );
        assert_eq!(
            parse_err("service.name=x"),
            "expected one of =, !=, =~, !~ after \"service\" at position 7, found '.' \
             (label names with characters other than letters, digits and '_' must be in \
             double quotes)"
        );
    }

    #[test]
    fn rejects_empty_name() {
        assert_eq!(
            parse_err(r#"="b""#),
            "missing label name before the operator at position 0"
        );
        assert_eq!(
            parse_err(r#" !~"b""#),
            "missing label name before the operator at position 1"
        );
        assert_eq!(
            parse_err(r#"""="b""#),
            "empty quoted label name at position 0: label names must not be empty"
        );
        assert_eq!(
            Matcher::new("", MatchOp::Equal, "x").map_err(|e| e.to_string()),
            Err("label name must not be empty".to_owned())
        );
    }

    #[test]
    fn rejects_bad_name_start() {
        assert_eq!(
            parse_err(r#"1st="x""#),
            "invalid label name start '1' at position 0: unquoted names must match \
             [a-zA-Z_][a-zA-Z0-9_]*, put other names in double quotes"
        );
        assert_eq!(
            parse_err("-a=b"),
            "invalid label name start '-' at position 0: unquoted names must match \
             [a-zA-Z_][a-zA-Z0-9_]*, put other names in double quotes"
        );
        assert_eq!(
            parse_err("'a'=b"),
            "invalid label name start '\\'' at position 0: unquoted names must match \
             [a-zA-Z_][a-zA-Z0-9_]*, put other names in double quotes"
        );
    }

    #[test]
    fn rejects_unterminated_quotes() {
        assert_eq!(
            parse_err(r#"team="ops"#),
            "unterminated quoted value starting at position 5"
        );
        assert_eq!(
            parse_err(r#"team="ops\""#),
            "unterminated quoted value starting at position 5"
        );
        assert_eq!(
            parse_err(r#""team=ops"#),
            "unterminated quoted label name starting at position 0"
        );
    }

    #[test]
    fn rejects_bad_escapes() {
        assert_eq!(
            parse_err(r#"job=~"\d+""#),
            r#"invalid escape sequence "\d" at position 6: only \", \\ and \n are allowed inside quotes (write \\ for a literal backslash)"#
        );
        assert_eq!(
            parse_err(r#"a="x\ty""#),
            r#"invalid escape sequence "\t" at position 4: only \", \\ and \n are allowed inside quotes (write \\ for a literal backslash)"#
        );
        assert_eq!(
            parse_err(r#"a="x\"#),
            r#"unterminated escape sequence at position 4: a backslash must be followed by ", \ or n"#
        );
    }

    #[test]
    fn rejects_invalid_regex() {
        assert_eq!(
            parse_err(r#"job=~"(""#),
            r#"invalid regex "(" in matcher job=~"(": unclosed group"#
        );
        assert_eq!(
            parse_err(r#"job!~"a)|(b""#),
            r#"invalid regex "a)|(b" in matcher job!~"a)|(b": unopened group"#
        );
        assert_eq!(
            Matcher::new("job", MatchOp::Regex, "[z-a]").map_err(|e| e.to_string()),
            Err(r#"invalid regex "[z-a]" in matcher job=~"[z-a]": invalid character class range, the start must be <= the end"#.to_owned())
        );
        // Equality operators never compile their value.
        assert!(Matcher::new("job", MatchOp::Equal, "(").is_ok());
    }

    #[test]
    fn rejects_junk_after_value() {
        assert_eq!(
            parse_err(r#"foo="bar"baz"#),
            "unexpected 'b' at position 9 after the value for \"foo\": expected ',' or the end \
             of the list (quote values that contain spaces or special characters)"
        );
        assert_eq!(
            parse_err("foo=bar baz"),
            "unexpected 'b' at position 8 after the value for \"foo\": expected ',' or the end \
             of the list (quote values that contain spaces or special characters)"
        );
        assert_eq!(
            parse_err("foo=a=b"),
            "unexpected '=' at position 5 after the value for \"foo\": expected ',' or the end \
             of the list (quote values that contain spaces or special characters)"
        );
        assert_eq!(
            parse_err(r"foo=bar\n"),
            "unexpected '\\\\' at position 7 after the value for \"foo\": expected ',' or the end \
             of the list (quote values that contain spaces or special characters)"
        );
    }

    #[test]
    fn rejects_special_character_at_value_start() {
        assert_eq!(
            parse_err("foo==bar"),
            "unexpected '=' at position 4 at the start of the value for \"foo\": put values \
             containing special characters in double quotes"
        );
        assert_eq!(
            parse_err(r"job=~\d+"),
            "unexpected '\\\\' at position 5 at the start of the value for \"job\": put values \
             containing special characters in double quotes"
        );
    }

    #[test]
    fn rejects_unbalanced_braces() {
        assert_eq!(
            list_err(r#"{a="b""#),
            "missing closing '}' at position 6 for the '{' at position 0"
        );
        assert_eq!(
            list_err(" {"),
            "missing closing '}' at position 2 for the '{' at position 1"
        );
        assert_eq!(
            list_err(r#"{a="b","#),
            "missing closing '}' at position 7 for the '{' at position 0"
        );
        assert_eq!(
            list_err(r#"a="b"}"#),
            "unexpected '}' at position 5: the input does not start with '{'"
        );
        assert_eq!(
            list_err("}"),
            "unexpected '}' at position 0: the input does not start with '{'"
        );
        assert_eq!(
            list_err(r#"{a="b"} c=d"#),
            "unexpected 'c' at position 8 after the closing '}'"
        );
        assert_eq!(
            list_err("{{a=b}}"),
            "expected a label name at position 1, found '{'"
        );
    }

    #[test]
    fn rejects_stray_commas() {
        assert_eq!(
            list_err(r#"a="b",,c="d""#),
            "expected a label name at position 6, found ','"
        );
        assert_eq!(
            list_err(",a=b"),
            "expected a label name at position 0, found ','"
        );
        assert_eq!(
            list_err("{ , }"),
            "expected a label name at position 2, found ','"
        );
    }

    #[test]
    fn single_parse_requires_exactly_one() {
        assert_eq!(
            parse_err(""),
            "no matcher found in input; expected something like team=\"ops\""
        );
        assert_eq!(
            parse_err("{}"),
            "no matcher found in input; expected something like team=\"ops\""
        );
        assert_eq!(
            parse_err("a=b, c=d"),
            "expected exactly one matcher, found 2"
        );
    }

    #[test]
    fn positions_are_byte_offsets() {
        assert_eq!(
            parse_err(r#""🙂"="x"y"#),
            "unexpected 'y' at position 10 after the value for \"🙂\": expected ',' or the end \
             of the list (quote values that contain spaces or special characters)"
        );
    }

    // ---- semantics ----

    #[test]
    fn regex_is_anchored() {
        let api = parse_ok(r#"job=~"api""#);
        assert!(api.matches(&labels(&[("job", "api")])));
        assert!(!api.matches(&labels(&[("job", "api-server")])));
        assert!(!api.matches(&labels(&[("job", "my-api")])));

        let either = parse_ok(r#"job=~"api|web""#);
        assert!(either.matches(&labels(&[("job", "api")])));
        assert!(either.matches(&labels(&[("job", "web")])));
        assert!(!either.matches(&labels(&[("job", "api|web")])));
        assert!(!either.matches(&labels(&[("job", "webapi")])));
        assert!(!either.matches(&labels(&[("job", "api-server")])));
    }

    #[test]
    fn equality_is_exact() {
        let eq = parse_ok(r#"env="prod""#);
        assert!(eq.matches(&labels(&[("env", "prod")])));
        assert!(!eq.matches(&labels(&[("env", "Prod")])));
        assert!(!eq.matches(&labels(&[("env", "prod ")])));
        assert!(!eq.matches(&labels(&[])));

        let ne = parse_ok(r#"env!="prod""#);
        assert!(!ne.matches(&labels(&[("env", "prod")])));
        assert!(ne.matches(&labels(&[("env", "dev")])));
        assert!(ne.matches(&labels(&[])));
    }

    #[test]
    fn absent_label_is_empty_string() {
        let none = labels(&[("other", "x")]);
        let empty = labels(&[("foo", "")]);
        let set = labels(&[("foo", "bar")]);

        let eq_empty = parse_ok(r#"foo="""#);
        assert!(eq_empty.matches(&none));
        assert!(eq_empty.matches(&empty));
        assert!(!eq_empty.matches(&set));

        let ne_empty = parse_ok(r#"foo!="""#);
        assert!(!ne_empty.matches(&none));
        assert!(!ne_empty.matches(&empty));
        assert!(ne_empty.matches(&set));

        let any = parse_ok(r#"foo=~".*""#);
        assert!(any.matches(&none));
        assert!(any.matches(&empty));
        assert!(any.matches(&set));

        let some = parse_ok(r#"foo=~".+""#);
        assert!(!some.matches(&none));
        assert!(some.matches(&set));
    }

    #[test]
    fn not_regex() {
        let not_api = parse_ok(r#"job!~"api|web""#);
        assert!(!not_api.matches(&labels(&[("job", "api")])));
        assert!(!not_api.matches(&labels(&[("job", "web")])));
        assert!(not_api.matches(&labels(&[("job", "api-server")])));
        assert!(not_api.matches(&labels(&[])));

        let not_empty = parse_ok(r#"foo!~"""#);
        assert!(!not_empty.matches(&labels(&[])));
        assert!(not_empty.matches(&labels(&[("foo", "x")])));
    }

    #[test]
    fn regex_flags_and_dot_follow_alertmanager() {
        let ci = parse_ok(r#"sev=~"(?i)crit""#);
        assert!(ci.matches(&labels(&[("sev", "CRIT")])));
        assert!(!ci.matches(&labels(&[("sev", "CRITICAL")])));
        // `.` does not cross newlines unless (?s) is given, as in Go.
        let dot = parse_ok(r#"msg=~"a.*b""#);
        assert!(!dot.matches(&labels(&[("msg", "a\nb")])));
        let dot_s = parse_ok(r#"msg=~"(?s)a.*b""#);
        assert!(dot_s.matches(&labels(&[("msg", "a\nb")])));
    }

    #[test]
    fn matches_all_requires_every_matcher() {
        let ms = list_ok(r#"{team="ops", severity=~"crit|page", env!="staging"}"#);
        assert!(matches_all(
            &ms,
            &labels(&[("team", "ops"), ("severity", "page"), ("env", "prod")])
        ));
        assert!(matches_all(
            &ms,
            &labels(&[("team", "ops"), ("severity", "crit")])
        ));
        assert!(!matches_all(
            &ms,
            &labels(&[("team", "ops"), ("severity", "crit"), ("env", "staging")])
        ));
        assert!(!matches_all(&ms, &labels(&[("team", "ops")])));
        assert!(matches_all(&[], &labels(&[])));
    }

    // ---- display ----

    #[test]
    fn displays_canonical_form() {
        assert_eq!(parse_ok("job = api").to_string(), r#"job="api""#);
        assert_eq!(parse_ok("job!~ a|b").to_string(), r#"job!~"a|b""#);
        assert_eq!(parse_ok(r#""a.b"!="x""#).to_string(), r#""a.b"!="x""#);
        assert_eq!(parse_ok(r#""1st"="x""#).to_string(), r#""1st"="x""#);
        assert_eq!(
            m("q", MatchOp::Equal, "say \"hi\"\\\n").to_string(),
            r#"q="say \"hi\"\\\n""#
        );
        assert_eq!(
            m("服务", MatchOp::Regex, "支付.*").to_string(),
            r#""服务"=~"支付.*""#
        );
        assert_eq!(MatchOp::NotRegex.to_string(), "!~");
    }

    #[test]
    fn equality_ignores_compiled_regex() {
        let a = parse_ok(r#"a=~"x+""#);
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, parse_ok(r#"a!~"x+""#));
        assert_ne!(a, parse_ok(r#"a=~"x*""#));
        assert_ne!(a, parse_ok(r#"b=~"x+""#));
    }

    // ---- properties ----

    fn op_strategy() -> impl Strategy<Value = MatchOp> {
        prop_oneof![
            Just(MatchOp::Equal),
            Just(MatchOp::NotEqual),
            Just(MatchOp::Regex),
            Just(MatchOp::NotRegex),
        ]
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        prop_oneof!["[a-zA-Z_][a-zA-Z0-9_]{0,12}", "(?s).{1,16}"]
    }

    const NOISE: &[&str] = &[
        "\"", "{", "}", "=", "!", "~", ",", "\\", " ", "\t", "\n", "a", "_", "1", "n", "=~", "!=",
        "!~", "\\\"", "\\\\", "\\n", "'", "`", "(", ")", "*", "|", ".", "é", "中", "🙂", "\u{a0}",
        "job", "\"x\"",
    ];

    /// Random runs of the grammar's own pieces, which reach every error path.
    fn grammar_soup() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(NOISE), 0..40)
            .prop_map(|parts| parts.concat())
    }

    /// Mostly well-formed lists with a few pieces of noise spliced in, so that
    /// many cases parse and the deeper states (after commas, inside braces,
    /// regex compilation) see odd input too.
    fn near_valid_list() -> impl Strategy<Value = String> {
        use proptest::sample::{select, Index};
        let names = select(
            &[
                "job",
                "_a1",
                "\"service.name\"",
                "\"服务\"",
                "\"a\\\"b\"",
                "x",
            ][..],
        );
        let spaces = select(&["", " ", "\t", "\n "][..]);
        let ops = select(&["=", "!=", "=~", "!~"][..]);
        let values = select(
            &[
                "",
                "v",
                "\"\"",
                "\"a b\"",
                "\"x\\\\y\"",
                "\"l\\n\"",
                "[a-z]+",
                "\"(a|b)\"",
                "\"🙂\"",
                "运维",
                "\"(\"",
                "\"\\\"\"",
            ][..],
        );
        let seps = select(&[",", ", ", " ,", ""][..]);
        let matcher = (names, spaces.clone(), ops, spaces, values, seps)
            .prop_map(|(n, s1, o, s2, v, sep)| [n, s1, o, s2, v, sep].concat());
        (
            select(&["", "{", " { "][..]),
            proptest::collection::vec(matcher, 0..4),
            select(&["", "}", " } ", ","][..]),
            proptest::collection::vec((any::<Index>(), select(NOISE)), 0..3),
        )
            .prop_map(|(open, matchers, close, edits)| {
                let mut input = [open, &matchers.concat(), close].concat();
                for (at, piece) in edits {
                    let boundaries: Vec<usize> = input
                        .char_indices()
                        .map(|(i, _)| i)
                        .chain(std::iter::once(input.len()))
                        .collect();
                    let pos = boundaries
                        .get(at.index(boundaries.len()))
                        .copied()
                        .unwrap_or(0);
                    input.insert_str(pos, piece);
                }
                input
            })
    }

    /// Builds a matcher for the round-trip property; regex operators get the
    /// raw text escaped so every generated value is a valid regex.
    fn build(name: &str, op: MatchOp, raw: &str) -> Result<Matcher, TestCaseError> {
        let value = if op.is_regex() {
            regex::escape(raw)
        } else {
            raw.to_owned()
        };
        Matcher::new(name, op, &value)
            .map_err(|e| TestCaseError::fail(format!("valid parts rejected: {e}")))
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_strings(input in any::<String>()) {
            let _ = Matcher::parse(&input).map_err(|e| e.to_string());
            let _ = parse_matchers(&input).map_err(|e| e.to_string());
        }

        #[test]
        fn never_panics_on_grammar_soup(input in prop_oneof![grammar_soup(), near_valid_list()]) {
            let _ = Matcher::parse(&input).map_err(|e| e.to_string());
            // Whatever parses must also survive a trip through Display.
            if let Ok(matchers) = parse_matchers(&input) {
                for matcher in matchers {
                    let printed = matcher.to_string();
                    prop_assert_eq!(Matcher::parse(&printed), Ok(matcher), "printed {}", printed);
                }
            }
        }

        #[test]
        fn display_round_trips(
            name in name_strategy(),
            op in op_strategy(),
            raw in "(?s).{0,24}",
        ) {
            let matcher = build(&name, op, &raw)?;
            let printed = matcher.to_string();
            prop_assert_eq!(Matcher::parse(&printed), Ok(matcher.clone()), "printed {}", printed);

            // An escaped regex or a plain value selects exactly `raw`.
            let positive = matches!(op, MatchOp::Equal | MatchOp::Regex);
            let mut labels = BTreeMap::new();
            labels.insert(name.clone(), raw.clone());
            prop_assert_eq!(matcher.matches(&labels), positive);
        }

        #[test]
        fn list_display_round_trips(
            parts in proptest::collection::vec(
                (name_strategy(), op_strategy(), "(?s).{0,12}"),
                0..5,
            ),
            braces in any::<bool>(),
        ) {
            let matchers = parts
                .iter()
                .map(|(name, op, raw)| build(name, *op, raw))
                .collect::<Result<Vec<_>, _>>()?;
            let body = matchers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let printed = if braces { format!("{{{body}}}") } else { body };
            prop_assert_eq!(parse_matchers(&printed), Ok(matchers), "printed {}", printed);
        }
    }
}
