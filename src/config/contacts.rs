//! `contacts:`: the people of the contact book, read into
//! [`Contact`]s (the book itself is [`crate::model::contacts`]).

use super::yaml::Node;
use super::Walker;
use crate::model::contacts::Contact;

/// Reads one `contacts[i]` entry.
pub fn contact_from_yaml(w: &mut Walker, node: &Node, path: &str) -> Option<Contact> {
    let mut m = w.map(node, path)?;
    let name = w.required_string(&mut m, "name");
    let email = match m.take("email") {
        Some(n) => {
            let s = w.string(n, &m.path_of("email"))?;
            if s.parse::<lettre::Address>().is_err() {
                w.error(
                    n.line,
                    &m.path_of("email"),
                    format!("`{s}` is not an e-mail address"),
                );
                return None;
            }
            Some(s)
        }
        None => None,
    };
    let telegram = match m.take("telegram") {
        Some(n) => Some(w.string(n, &m.path_of("telegram"))?),
        None => None,
    };
    let mut groups = Vec::new();
    if let Some(n) = m.take("groups") {
        let gpath = m.path_of("groups");
        for (i, g) in w.list(n, &gpath).unwrap_or_default().iter().enumerate() {
            if let Some(s) = w.string(g, &format!("{gpath}[{i}]")) {
                if s.trim().is_empty() {
                    w.error(g.line, &format!("{gpath}[{i}]"), "empty group name".into());
                } else if !groups.contains(&s) {
                    groups.push(s);
                }
            }
        }
    }
    m.finish(w);
    Some(Contact {
        name: name?,
        email,
        telegram,
        groups,
    })
}
