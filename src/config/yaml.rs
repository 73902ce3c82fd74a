//! A small YAML tree that remembers the line of every node.
//!
//! serde stops at the first error and forgets where values came from; an
//! operator fixing a config wants every mistake with its line in one go. So
//! the file is parsed with `saphyr` (maintained, YAML 1.2, keeps spans) into
//! this tree, and `config::build` walks it collecting errors.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

/// One YAML node with the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line in the file.
    pub line: usize,
    /// The value.
    pub value: Value,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (quoted or plain).
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping with string keys, in file order.
    Map(Vec<(String, Node)>),
}

impl Value {
    /// A word for error messages: "a list", "a number", ...
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "empty",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// A YAML syntax error with its place.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What the parser said.
    pub message: String,
}

/// Parses one YAML document. An empty file is an empty mapping.
pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let docs = MarkedYamlOwned::load_from_str(text).map_err(|e| {
        vec![SyntaxError {
            line: e.marker().line(),
            message: e.info().to_string(),
        }]
    })?;
    if docs.len() > 1 {
        return Err(vec![SyntaxError {
            line: docs[1].span.start.line(),
            message: "the file holds more than one YAML document; put everything in one".into(),
        }]);
    }
    let Some(doc) = docs.into_iter().next() else {
        return Ok(Node {
            line: 1,
            value: Value::Map(Vec::new()),
        });
    };
    // The loaded tree keeps only the last of duplicate keys, so they are
    // found on the event stream instead.
    let mut errors = duplicate_keys(text);
    let mut node = convert(doc, &mut errors);
    node.line = node.line.max(1);
    if errors.is_empty() {
        Ok(node)
    } else {
        Err(errors)
    }
}

/// Finds keys given twice in one mapping (`a: 1` then `a: 2`), which an
/// operator almost certainly did not mean.
fn duplicate_keys(text: &str) -> Vec<SyntaxError> {
    use saphyr_parser::{Event, Parser};
    enum Frame {
        Map {
            keys: Vec<String>,
            expecting_key: bool,
        },
        Seq,
    }
    let mut errors = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    // Called when a complete node ends: it was a key or a value of the enclosing map.
    fn node_done(
        stack: &mut [Frame],
        key: Option<&str>,
        line: usize,
        errors: &mut Vec<SyntaxError>,
    ) {
        if let Some(Frame::Map {
            keys,
            expecting_key,
        }) = stack.last_mut()
        {
            if *expecting_key {
                if let Some(k) = key {
                    if keys.iter().any(|x| x == k) {
                        errors.push(SyntaxError {
                            line,
                            message: format!("key `{k}` is given twice"),
                        });
                    } else {
                        keys.push(k.to_string());
                    }
                }
            }
            *expecting_key = !*expecting_key;
        }
    }
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let line = span.start.line();
        match event {
            Event::MappingStart(..) => stack.push(Frame::Map {
                keys: Vec::new(),
                expecting_key: true,
            }),
            Event::SequenceStart(..) => stack.push(Frame::Seq),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                node_done(&mut stack, None, line, &mut errors);
            }
            Event::Scalar(value, ..) => node_done(&mut stack, Some(&value), line, &mut errors),
            Event::Alias(_) => node_done(&mut stack, None, line, &mut errors),
            _ => {}
        }
    }
    errors
}

fn convert(node: MarkedYamlOwned, errors: &mut Vec<SyntaxError>) -> Node {
    let line = node.span.start.line();
    let value = match node.data {
        YamlDataOwned::Value(scalar) => match scalar {
            ScalarOwned::Null => Value::Null,
            ScalarOwned::Boolean(b) => Value::Bool(b),
            ScalarOwned::Integer(i) => Value::Int(i),
            ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
            ScalarOwned::String(s) => Value::Str(s),
        },
        YamlDataOwned::Representation(s, _, _) => Value::Str(s),
        YamlDataOwned::Sequence(items) => {
            Value::Seq(items.into_iter().map(|n| convert(n, errors)).collect())
        }
        YamlDataOwned::Mapping(map) => {
            let mut entries: Vec<(String, Node)> = Vec::with_capacity(map.len());
            for (k, v) in map {
                let key_line = k.span.start.line();
                let key = match k.data {
                    YamlDataOwned::Value(ScalarOwned::String(s)) => s,
                    YamlDataOwned::Representation(s, _, _) => s,
                    YamlDataOwned::Value(ScalarOwned::Integer(i)) => i.to_string(),
                    YamlDataOwned::Value(ScalarOwned::Boolean(b)) => b.to_string(),
                    _ => {
                        errors.push(SyntaxError {
                            line: key_line,
                            message: "mapping keys must be plain strings".into(),
                        });
                        continue;
                    }
                };
                if entries.iter().any(|(existing, _)| *existing == key) {
                    errors.push(SyntaxError {
                        line: key_line,
                        message: format!("key `{key}` is given twice"),
                    });
                    continue;
                }
                let mut value = convert(v, errors);
                // A null value's span can point past the key; the key's line is what people look for.
                if value.value == Value::Null || value.line == 0 {
                    value.line = key_line;
                }
                entries.push((key, value));
            }
            Value::Map(entries)
        }
        YamlDataOwned::Tagged(_, inner) => return convert(*inner, errors),
        YamlDataOwned::Alias(_) => {
            errors.push(SyntaxError {
                line,
                message: "YAML aliases are not supported; write the value out".into(),
            });
            Value::Null
        }
        YamlDataOwned::BadValue => {
            errors.push(SyntaxError {
                line,
                message: "value cannot be read".into(),
            });
            Value::Null
        }
    };
    // saphyr leaves some collection spans unset (line 0); the first child's
    // line is where a reader looks for the collection.
    let line = if line == 0 {
        match &value {
            Value::Map(entries) => entries.first().map(|(_, n)| n.line).unwrap_or(0),
            Value::Seq(items) => items.first().map(|n| n.line).unwrap_or(0),
            _ => 0,
        }
    } else {
        line
    };
    Node { line, value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based_and_per_node() {
        let node = parse("a: 1\nb:\n  - x\n  - y\nc: \"s\"\n").expect("parses");
        let Value::Map(entries) = node.value else {
            panic!("not a map")
        };
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[0].1.line, 1);
        assert_eq!(entries[0].1.value, Value::Int(1));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[1].line, 4);
        assert_eq!(entries[2].1.value, Value::Str("s".into()));
        assert_eq!(entries[2].1.line, 5);
    }

    #[test]
    fn empty_file_is_empty_map() {
        assert_eq!(parse("").expect("parses").value, Value::Map(vec![]));
    }

    #[test]
    fn syntax_error_has_line() {
        let err = parse("a: 1\nb: [1, 2\n").expect_err("fails");
        assert!(err[0].line >= 2, "{err:?}");
    }

    #[test]
    fn duplicate_key_is_an_error() {
        let err = parse("a: 1\na: 2\n").expect_err("fails");
        assert_eq!(err[0].line, 2);
        assert!(err[0].message.contains("twice"));
    }
}
