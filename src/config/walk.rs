//! Walking the YAML tree into typed values while collecting every error.
//!
//! Each getter records a [`ConfigError`] with the key path and line instead of
//! returning early, so one run of `check-config` lists all mistakes. [`Map`]
//! remembers which keys were read, so anything left over is an unknown key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use super::yaml::{Node, Value};
use super::ConfigError;
use crate::model::duration::parse_duration;

/// Collects errors while typed values are read from the tree.
pub struct Walker<'e> {
    errors: Vec<ConfigError>,
    env: &'e dyn Fn(&str) -> Option<String>,
    base_dir: PathBuf,
}

/// A mapping being read; keys not taken by the end are reported as unknown.
pub struct Map<'a> {
    path: String,
    entries: &'a [(String, Node)],
    used: Vec<bool>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> Map<'a> {
    /// The value under `key`, marking it as known.
    pub fn take(&mut self, key: &str) -> Option<&'a Node> {
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        self.used[i] = true;
        Some(&self.entries[i].1)
    }

    /// Whether `key` is absent.
    pub fn has_no(&self, key: &str) -> bool {
        !self.entries.iter().any(|(k, _)| k == key)
    }

    /// The path of a key of this mapping.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Refuses a key of the product contract whose feature is not built yet.
    pub fn not_supported_yet(&mut self, w: &mut Walker, key: &str) {
        if let Some(n) = self.take(key) {
            w.error(n.line, &self.path_of(key), "not supported yet".into());
        }
    }

    /// Accepts `key` only with the value that means "off"; anything else is
    /// "not supported yet".
    pub fn only_default(&mut self, w: &mut Walker, key: &str, is_default: fn(&Value) -> bool) {
        if let Some(n) = self.take(key) {
            if !is_default(&n.value) {
                w.error(n.line, &self.path_of(key), "not supported yet".into());
            }
        }
    }

    /// Takes every key, for mappings whose keys are data (header names).
    pub fn take_all(&mut self) -> &'a [(String, Node)] {
        self.used.iter_mut().for_each(|u| *u = true);
        self.entries
    }

    /// Reports every key nobody took.
    pub fn finish(self, w: &mut Walker) {
        for ((key, node), used) in self.entries.iter().zip(self.used) {
            if !used {
                w.error(node.line, &join(&self.path, key), "unknown key".into());
            }
        }
    }
}

impl<'e> Walker<'e> {
    /// Where relative paths (`*_file`, `template`) are resolved.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// A walker resolving `${VAR}` with `env` and `*_file` paths against `base_dir`.
    pub fn new(env: &'e dyn Fn(&str) -> Option<String>, base_dir: &Path) -> Self {
        Self {
            errors: Vec::new(),
            env,
            base_dir: base_dir.to_path_buf(),
        }
    }

    /// The errors collected.
    pub fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// Records an error.
    pub fn error(&mut self, line: usize, path: &str, message: String) {
        self.errors.push(ConfigError {
            line,
            path: path.to_string(),
            message,
        });
    }

    /// Opens a mapping.
    pub fn map<'a>(&mut self, node: &'a Node, path: &str) -> Option<Map<'a>> {
        match &node.value {
            Value::Map(entries) => Some(Map {
                path: path.to_string(),
                entries,
                used: vec![false; entries.len()],
            }),
            Value::Null if path.is_empty() => Some(Map {
                path: String::new(),
                entries: &[],
                used: Vec::new(),
            }),
            other => {
                self.error(
                    node.line,
                    path,
                    format!("expected a mapping, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A list (an empty value counts as an empty list).
    pub fn list<'a>(&mut self, node: &'a Node, path: &str) -> Option<&'a [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            Value::Null => Some(&[]),
            other => {
                self.error(
                    node.line,
                    path,
                    format!("expected a list, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A string, with `${VAR}` expanded. Numbers and booleans are taken as written.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        let raw = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                self.error(
                    node.line,
                    path,
                    format!("expected a string, found {}", other.kind()),
                );
                return None;
            }
        };
        match expand_env(&raw, self.env) {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(node.line, path, e);
                None
            }
        }
    }

    /// A required string key of a mapping.
    pub fn required_string(&mut self, m: &mut Map, key: &str) -> Option<String> {
        match m.take(key) {
            Some(n) => {
                let s = self.string(n, &m.path_of(key))?;
                if s.is_empty() {
                    self.error(n.line, &m.path_of(key), "must not be empty".into());
                    return None;
                }
                Some(s)
            }
            None => {
                let line = m.entries.first().map(|(_, n)| n.line).unwrap_or(0);
                self.error(line, &m.path, format!("`{key}` is required"));
                None
            }
        }
    }

    /// A boolean.
    pub fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    node.line,
                    path,
                    format!("expected true or false, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// An integer within bounds.
    pub fn integer(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        match &node.value {
            Value::Int(i) if (min..=max).contains(i) => Some(*i),
            Value::Int(i) => {
                self.error(
                    node.line,
                    path,
                    format!("{i} is out of range ({min} to {max})"),
                );
                None
            }
            other => {
                self.error(
                    node.line,
                    path,
                    format!("expected a whole number, found {}", other.kind()),
                );
                None
            }
        }
    }

    /// A duration like `30s`.
    pub fn duration(&mut self, node: &Node, path: &str) -> Option<Duration> {
        let s = self.string(node, path)?;
        match parse_duration(&s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node.line, path, e);
                None
            }
        }
    }

    /// A secret given as `key: value` or `key_file: PATH` (read now, one
    /// trailing newline dropped). Both at once is an error.
    pub fn secret(&mut self, m: &mut Map, key: &str, required: bool) -> Option<SecretString> {
        let file_key = format!("{key}_file");
        let direct = m.take(key);
        let file = m.take(&file_key);
        match (direct, file) {
            (Some(d), Some(_)) => {
                self.error(
                    d.line,
                    &m.path_of(key),
                    format!("give `{key}` or `{file_key}`, not both"),
                );
                None
            }
            (Some(d), None) => {
                let s = self.string(d, &m.path_of(key))?;
                if s.is_empty() {
                    self.error(
                        d.line,
                        &m.path_of(key),
                        "must not be empty (is the environment variable set?)".into(),
                    );
                    return None;
                }
                Some(SecretString::from(s))
            }
            (None, Some(f)) => {
                let p = self.string(f, &m.path_of(&file_key))?;
                let path = self.base_dir.join(&p);
                match std::fs::read_to_string(&path) {
                    Ok(mut s) => {
                        if s.ends_with('\n') {
                            s.pop();
                            if s.ends_with('\r') {
                                s.pop();
                            }
                        }
                        if s.is_empty() {
                            self.error(
                                f.line,
                                &m.path_of(&file_key),
                                format!("{} is empty", path.display()),
                            );
                            return None;
                        }
                        Some(SecretString::from(s))
                    }
                    Err(e) => {
                        self.error(
                            f.line,
                            &m.path_of(&file_key),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (None, None) => {
                if required {
                    let line = m.entries.first().map(|(_, n)| n.line).unwrap_or(0);
                    self.error(
                        line,
                        &m.path,
                        format!("`{key}` (or `{file_key}`) is required"),
                    );
                }
                None
            }
        }
    }

    /// A list of secrets (`tokens: [...]` or `tokens_file: PATH` with one per line).
    pub fn secret_list(&mut self, m: &mut Map, key: &str) -> Vec<SecretString> {
        let mut out = Vec::new();
        if let Some(list) = m.take(key) {
            let path = m.path_of(key);
            for (i, item) in self
                .list(list, &path)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let ipath = format!("{path}[{i}]");
                if let Some(s) = self.string(item, &ipath) {
                    if s.is_empty() {
                        self.error(
                            item.line,
                            &ipath,
                            "must not be empty (is the environment variable set?)".into(),
                        );
                    } else {
                        out.push(SecretString::from(s));
                    }
                }
            }
        }
        let file_key = format!("{key}_file");
        if let Some(f) = m.take(&file_key) {
            if let Some(p) = self.string(f, &m.path_of(&file_key)) {
                let path = self.base_dir.join(&p);
                match std::fs::read_to_string(&path) {
                    Ok(s) => out.extend(
                        s.lines()
                            .map(str::trim)
                            .filter(|l| !l.is_empty())
                            .map(|l| SecretString::from(l.to_string())),
                    ),
                    Err(e) => self.error(
                        f.line,
                        &m.path_of(&file_key),
                        format!("cannot read {}: {e}", path.display()),
                    ),
                }
            }
        }
        out
    }
}

/// Replaces `${VAR}` with the variable's value; `$${` stands for a literal `${`.
pub fn expand_env(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    if !raw.contains('$') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix("${") {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in `{raw}`"))?;
            let name = &inner[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand_env;

    fn env(name: &str) -> Option<String> {
        match name {
            "TG_TOKEN" => Some("123:abc".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_expansion_rules() {
        assert_eq!(expand_env("a${TG_TOKEN}b", &env).expect("ok"), "a123:abcb");
        assert_eq!(expand_env("$${TG_TOKEN}", &env).expect("ok"), "${TG_TOKEN}");
        assert_eq!(expand_env("cost $5", &env).expect("ok"), "cost $5");
        assert!(expand_env("${TG_TOKEN", &env)
            .expect_err("unclosed")
            .contains("unclosed"));
        assert!(expand_env("${1X}", &env)
            .expect_err("bad")
            .contains("not a valid"));
    }
}
