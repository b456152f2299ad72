//! A TOML parse or type error turned into one that names the field (`dns.record_ttl_s`),
//! says in words what the field takes, and shows the shipped file's line for it as the fix.

use toml_edit::{ImDocument, Item, Table, Value};

use super::rules::shown;
use super::{ConfigError, EMBEDDED_REGIONS_TOML};
use crate::locate::Loc;

/// `what`: "regions.toml" or "the template"; `example`: a valid file of the same kind, whose
/// line for the same key is shown as the fix.
pub(crate) fn describe(file: &str, src: &str, e: &toml::de::Error, example: &str) -> ConfigError {
    let offset = e.span().map(|s| s.start);
    let path = offset.and_then(|o| path_at(src, o));
    let field = path.as_ref().map(|p| p.join(".")).unwrap_or_default();
    let message = words(e.message().trim());
    let key = path.as_ref().and_then(|p| p.iter().rev().find(|k| k.parse::<usize>().is_err())).cloned();
    let fix = match key.as_deref().and_then(|k| example_line(example, k)) {
        Some(line) => format!("write it as the shipped file does, e.g. `{line}`"),
        None if path.is_some() => "correct that value (see the shipped regions.toml for every field)".to_string(),
        None => "correct the TOML at that position (see the shipped regions.toml for every field)".to_string(),
    };
    ConfigError { file: file.to_string(), loc: offset.map(|o| Loc::of_offset(src, o)), field, problem: message, fix }
}

/// What a regions.toml error's fix shows: the embedded file's example lines.
pub(super) fn describe_regions(file: &str, src: &str, e: &toml::de::Error) -> ConfigError {
    describe(file, src, e, EMBEDDED_REGIONS_TOML)
}

/// serde's words for types, in the words of someone writing TOML.
fn words(message: &str) -> String {
    const TYPES: [(&str, &str); 12] = [
        ("expected i64", "expected a whole number"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected a string", "expected text in quotes"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list in [ ]"),
        ("expected a map", "expected a table"),
        ("invalid type: string", "found text"),
        ("invalid type: integer", "found the number"),
        ("invalid type: sequence", "found a list"),
    ];
    let mut m = message.to_string();
    for (from, to) in TYPES {
        m = m.replace(from, to);
    }
    // The value as the user wrote it (serde quotes it) is echoed short, escaped and without
    // credentials.
    if !m.starts_with("invalid") {
        return m;
    }
    match (m.find('"'), m.rfind('"')) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &m[..a], shown(&m[a + 1..b]), &m[b + 1..]),
        _ => m,
    }
}

/// The line of `example` that sets `key` (comments cut), if it has one.
fn example_line(example: &str, key: &str) -> Option<String> {
    example.lines().find_map(|l| {
        let code = l.split(" #").next().unwrap_or(l).trim();
        let (k, _) = code.split_once('=')?;
        (k.trim() == key && !code.starts_with('#')).then(|| code.to_string())
    })
}

/// The field path whose key or value contains byte `offset` (array elements by index).
fn path_at(src: &str, offset: usize) -> Option<Vec<String>> {
    let Ok(doc) = ImDocument::parse(src) else { return path_by_lines(src, offset) };
    let mut path = Vec::new();
    walk_table(doc.as_table(), offset, &mut path).then_some(path)
}

/// For a file that is not TOML at all: the key on the error's line, inside the last table
/// header above it (`[[region]]` headers counted).
fn path_by_lines(src: &str, offset: usize) -> Option<Vec<String>> {
    let upto = &src[..offset.min(src.len())];
    let line_start = upto.rfind('\n').map_or(0, |i| i + 1);
    let line = src[line_start..].lines().next().unwrap_or("");
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return None;
    }
    let mut table: Vec<String> = Vec::new();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for l in upto[..line_start].lines().map(str::trim) {
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let n = counts.entry(name.trim().to_string()).or_insert(0);
            table = vec![name.trim().to_string(), n.to_string()];
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            table = name.trim().split('.').map(str::to_string).collect();
        }
    }
    table.push(key.to_string());
    Some(table)
}

fn walk_table(t: &Table, offset: usize, path: &mut Vec<String>) -> bool {
    for (k, item) in t.iter() {
        let key_span = t.key(k).and_then(|key| key.span());
        path.push(k.to_string());
        if walk_item(item, key_span, offset, path) {
            return true;
        }
        path.pop();
    }
    // A missing field is reported at its table: the table's own path.
    t.span().is_some_and(|s| s.contains(&offset)) && !path.is_empty()
}

fn walk_item(item: &Item, key_span: Option<std::ops::Range<usize>>, offset: usize, path: &mut Vec<String>) -> bool {
    match item {
        Item::Table(t) => walk_table(t, offset, path) || key_span.is_some_and(|s| s.contains(&offset)),
        Item::ArrayOfTables(a) => a.iter().enumerate().any(|(i, t)| {
            path.push(i.to_string());
            let hit = walk_table(t, offset, path) || t.span().is_some_and(|s| s.contains(&offset));
            if !hit {
                path.pop();
            }
            hit
        }),
        Item::Value(v) => {
            let end = v.span().map(|s| s.end).unwrap_or(0);
            let start = key_span.map(|s| s.start).or(v.span().map(|s| s.start)).unwrap_or(usize::MAX);
            if !(start <= offset && offset < end.max(start + 1)) {
                return false;
            }
            if let Value::InlineTable(t) = v {
                for (k, inner) in t.iter() {
                    let hit = t.key(k).and_then(|key| key.span()).is_some_and(|s| s.contains(&offset))
                        || inner.span().is_some_and(|s| s.contains(&offset));
                    if hit {
                        path.push(k.to_string());
                        return true;
                    }
                }
            }
            true
        }
        Item::None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of(src: &str) -> ConfigError {
        let e = toml::from_str::<super::super::RawConfig>(src).unwrap_err();
        describe_regions("regions.toml", src, &e)
    }

    #[test]
    fn a_type_error_names_the_field_says_what_it_takes_and_shows_an_example() {
        let src = EMBEDDED_REGIONS_TOML.replace("record_ttl_s = 10", "record_ttl_s = \"10\"");
        let e = err_of(&src);
        assert_eq!(e.field, "dns.record_ttl_s", "{e}");
        assert!(e.problem.contains("whole number") && e.problem.contains("text"), "{e}");
        assert!(e.fix.contains("record_ttl_s = 10"), "{e}");
    }

    #[test]
    fn a_field_in_the_second_region_is_named_by_its_index() {
        let src = EMBEDDED_REGIONS_TOML.replacen("vpc_cidr = \"10.20.0.0/16\"", "vpc_cidr = 1020", 1);
        let e = err_of(&src);
        assert_eq!(e.field, "region.1.vpc_cidr", "{e}");
    }
}
