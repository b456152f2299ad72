//! Maps a field path (`["region", "1", "vpc_cidr"]`) to its line and column in a TOML
//! source, so validation errors can say `regions.toml:31:1`.

use toml_edit::{ImDocument, InlineTable, Item, Table, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Loc {
    pub line: usize,
    pub col: usize,
}

impl Loc {
    /// 1-based line and column of a byte offset.
    pub fn of_offset(src: &str, offset: usize) -> Loc {
        let before = &src[..offset.min(src.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Loc { line, col }
    }
}

enum Node<'a> {
    Table(&'a Table),
    Inline(&'a InlineTable),
    Item(&'a Item),
}

/// The location of the deepest part of `path` found in `src` (a key's span when it has one).
/// Numeric components index arrays of tables.
pub fn locate(src: &str, path: &[&str]) -> Option<Loc> {
    let doc = ImDocument::parse(src).ok()?;
    let mut best: Option<usize> = None;
    let mut node = Node::Table(doc.as_table());
    for part in path {
        let (next, span) = match node {
            Node::Table(t) => match t.get(part) {
                Some(i) => (Node::Item(i), t.key(part).and_then(|k| k.span()).or_else(|| i.span())),
                None => break,
            },
            Node::Inline(t) => match t.get(part) {
                Some(v) => (Node::Item(leaf(v)), t.key(part).and_then(|k| k.span()).or_else(|| v.span())),
                None => break,
            },
            Node::Item(Item::ArrayOfTables(a)) => match part.parse().ok().and_then(|i: usize| a.get(i)) {
                Some(t) => (Node::Table(t), t.span()),
                None => break,
            },
            Node::Item(Item::Table(t)) => match t.get(part) {
                Some(i) => (Node::Item(i), t.key(part).and_then(|k| k.span()).or_else(|| i.span())),
                None => break,
            },
            Node::Item(Item::Value(Value::InlineTable(t))) => match t.get(part) {
                Some(v) => (Node::Inline(inline_of(v)), t.key(part).and_then(|k| k.span()).or_else(|| v.span())),
                None => break,
            },
            Node::Item(_) => break,
        };
        if let Some(s) = span {
            best = Some(s.start);
        }
        node = next;
    }
    best.map(|o| Loc::of_offset(src, o))
}

/// A value inside a nested inline table ends the walk: errors never point deeper than its key.
fn leaf(_v: &Value) -> &'static Item {
    static NONE: Item = Item::None;
    &NONE
}

fn inline_of(v: &Value) -> &InlineTable {
    static EMPTY: std::sync::OnceLock<InlineTable> = std::sync::OnceLock::new();
    match v {
        Value::InlineTable(t) => t,
        _ => EMPTY.get_or_init(InlineTable::new),
    }
}
