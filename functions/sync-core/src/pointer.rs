//! JSON pointers (RFC 6901) decoded once, when a mapping is loaded, so that reading a
//! record walks its objects without re-parsing and re-allocating every pointer on every
//! record; and the tree of the pointers a mapping reads, which tells apart the attributes
//! it consumes from those kept aside as unmapped.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A JSON pointer split into its decoded reference tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPath {
    tokens: Vec<String>,
}

impl JsonPath {
    /// Decodes a pointer such as `/properties/email` (`~1` is `/`, `~0` is `~`). The empty
    /// pointer is the whole document; anything else must start with `/` (mappings are
    /// validated for that before they are compiled).
    pub fn parse(pointer: &str) -> Self {
        let tokens = match pointer.strip_prefix('/') {
            None => Vec::new(),
            Some(rest) => rest
                .split('/')
                .map(|token| token.replace("~1", "/").replace("~0", "~"))
                .collect(),
        };
        Self { tokens }
    }

    /// The decoded tokens, outermost first.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The value the pointer designates, as [`serde_json::Value::pointer`] finds it.
    pub fn get<'a>(&self, document: &'a Value) -> Option<&'a Value> {
        self.tokens
            .iter()
            .try_fold(document, |target, token| match target {
                Value::Object(map) => map.get(token),
                Value::Array(items) => array_index(token).and_then(|index| items.get(index)),
                _ => None,
            })
    }
}

/// An array index as RFC 6901 writes it: decimal digits, no sign, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

/// The attributes a mapping reads, as a tree of object keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumedTree {
    read: bool,
    children: BTreeMap<String, ConsumedTree>,
}

impl ConsumedTree {
    /// Marks the attribute at `path` as read.
    pub fn insert(&mut self, path: &JsonPath) {
        let node = path.tokens().iter().fold(self, |node, token| {
            node.children.entry(token.clone()).or_default()
        });
        node.read = true;
    }

    /// Whether the attribute at `path` is read (itself, not only something inside it).
    pub fn reads(&self, path: &JsonPath) -> bool {
        let mut node = self;
        for token in path.tokens() {
            match node.children.get(token) {
                Some(child) => node = child,
                None => return false,
            }
        }
        node.read
    }

    /// Puts every attribute of `object` that nothing reads into `unmapped`, keyed by its
    /// dotted path, descending into objects that hold read attributes (such as the CRM's
    /// `properties`).
    pub fn collect_unmapped(&self, object: &Map<String, Value>, unmapped: &mut Map<String, Value>) {
        self.collect_under("", object, unmapped);
    }

    fn collect_under(
        &self,
        prefix: &str,
        object: &Map<String, Value>,
        unmapped: &mut Map<String, Value>,
    ) {
        for (key, value) in object {
            match (self.children.get(key), value) {
                (Some(child), _) if child.read => {}
                (Some(child), Value::Object(inner)) => {
                    child.collect_under(&dotted_path(prefix, key), inner, unmapped)
                }
                _ => {
                    unmapped.insert(dotted_path(prefix, key), value.clone());
                }
            }
        }
    }
}

/// `prefix.key`, with `~` and `/` in the key escaped as a JSON pointer escapes them
/// (`~0`, `~1`) and `.` as `~2`, so a key holding a dot (`"a.b"`) cannot collide with a
/// nested one (`{"a": {"b": ..}}`, which is `a.b`).
pub fn dotted_path(prefix: &str, key: &str) -> String {
    let mut path = String::with_capacity(prefix.len() + key.len() + 1);
    if !prefix.is_empty() {
        path.push_str(prefix);
        path.push('.');
    }
    for c in key.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            '.' => path.push_str("~2"),
            c => path.push(c),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_compiled_pointer_finds_what_serde_json_finds() {
        let document = json!({
            "a": {"b/c": {"d~e": 1}, "list": [10, 20, 30]},
            "": "empty key",
            "n": null
        });
        for pointer in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/d~0e",
            "/a/list/1",
            "/a/list/01",
            "/a/list/+1",
            "/a/list/3",
            "/a/missing",
            "/",
            "/n",
            "/n/x",
            "/a/b~1c/d~0e/deeper",
        ] {
            assert_eq!(
                JsonPath::parse(pointer).get(&document),
                document.pointer(pointer),
                "{pointer}"
            );
        }
    }

    #[test]
    fn the_tree_keeps_unread_attributes_and_descends_into_read_parents() {
        let mut tree = ConsumedTree::default();
        for pointer in ["/id", "/properties/email", "/meta"] {
            tree.insert(&JsonPath::parse(pointer));
        }
        assert!(tree.reads(&JsonPath::parse("/properties/email")));
        assert!(!tree.reads(&JsonPath::parse("/properties")));
        let record = json!({
            "id": "1",
            "meta": {"anything": true},
            "properties": {"email": "a@b.co", "colour": "green", "a/b~c": 1},
            "extra": [1, 2],
        });
        let mut unmapped = Map::new();
        tree.collect_unmapped(record.as_object().unwrap(), &mut unmapped);
        assert_eq!(
            Value::Object(unmapped),
            json!({"extra": [1, 2], "properties.colour": "green", "properties.a~1b~0c": 1})
        );
    }

    #[test]
    fn a_read_parent_that_is_not_an_object_is_kept_whole() {
        let mut tree = ConsumedTree::default();
        tree.insert(&JsonPath::parse("/properties/email"));
        let record = json!({"properties": "not an object"});
        let mut unmapped = Map::new();
        tree.collect_unmapped(record.as_object().unwrap(), &mut unmapped);
        assert_eq!(
            Value::Object(unmapped),
            json!({"properties": "not an object"})
        );
    }
}
