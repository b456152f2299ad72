//! The few XML reads and rewrites the front needs (EC2 responses, Route53 request bodies).

use xmltree::{Element, XMLNode};

pub fn parse(body: &[u8]) -> Option<Element> {
    Element::parse(body).ok()
}

pub fn children<'a>(e: &'a Element, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
    e.children.iter().filter_map(|n| n.as_element()).filter(move |c| c.name == name)
}

/// The text of the element at `path` below `e` (first match at each step).
pub fn text_at(e: &Element, path: &[&str]) -> Option<String> {
    let mut cur = e;
    for p in path {
        cur = cur.get_child(*p)?;
    }
    Some(cur.get_text().map(|t| t.into_owned()).unwrap_or_default())
}

fn descendants_text(e: &Element, name: &str, out: &mut Vec<String>) {
    for c in e.children.iter().filter_map(|n| n.as_element()) {
        if c.name == name {
            out.extend(c.get_text().map(|t| t.into_owned()));
        } else {
            descendants_text(c, name, out);
        }
    }
}

/// The ids a create response names: RunInstances' instancesSet/item/instanceId, else the
/// first `field` element found depth-first (CreateSubnet's vpcId is another field).
pub fn created_ids(body: &[u8], action: &str, field: &str) -> Vec<String> {
    let Some(root) = parse(body) else { return Vec::new() };
    if action == "RunInstances" {
        let Some(set) = root.get_child("instancesSet") else { return Vec::new() };
        return children(set, "item").filter_map(|i| text_at(i, &[field])).collect();
    }
    let mut out = Vec::new();
    descendants_text(&root, field, &mut out);
    out.truncate(1);
    out
}

fn item_id(item: &Element, field: &str) -> Option<String> {
    text_at(item, &[field])
}

/// Drops `<item>`s of the listing `set` whose `field` is young; DescribeInstances' items are
/// reservations (their instancesSet is filtered, and an emptied reservation dropped).
/// None when nothing was dropped.
pub fn drop_items(body: &[u8], set: &str, field: &str, young: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut root = parse(body)?;
    let list = root.get_mut_child(set)?;
    let before = count_items(list, field);
    list.children.retain_mut(|n| keep(n, set, field, young));
    if count_items(list, field) == before {
        return None;
    }
    let mut out = Vec::new();
    root.write(&mut out).ok()?;
    Some(out)
}

/// Sets the text at `path` below each `<item>` of the listing `set` whose `field` `pick`s.
/// None when nothing changed.
pub fn set_item_text(body: &[u8], set: &str, field: &str, pick: &dyn Fn(&str) -> bool, path: &[&str], text: &str) -> Option<Vec<u8>> {
    let mut root = parse(body)?;
    let list = root.get_mut_child(set)?;
    let mut changed = false;
    for item in list.children.iter_mut().filter_map(|n| n.as_mut_element()) {
        if !item_id(item, field).is_some_and(|id| pick(&id)) {
            continue;
        }
        let mut cur = Some(&mut *item);
        for p in path {
            cur = cur.and_then(|e| e.get_mut_child(*p));
        }
        if let Some(e) = cur {
            e.children = vec![XMLNode::Text(text.to_string())];
            changed = true;
        }
    }
    if !changed {
        return None;
    }
    let mut out = Vec::new();
    root.write(&mut out).ok()?;
    Some(out)
}

fn count_items(list: &Element, field: &str) -> usize {
    let mut ids = Vec::new();
    descendants_text(list, field, &mut ids);
    ids.len()
}

fn keep(node: &mut XMLNode, set: &str, field: &str, young: &dyn Fn(&str) -> bool) -> bool {
    let XMLNode::Element(item) = node else { return true };
    if set != "reservationSet" {
        return !item_id(item, field).is_some_and(|id| young(&id));
    }
    let Some(instances) = item.get_mut_child("instancesSet") else { return true };
    instances.children.retain(|n| !n.as_element().and_then(|i| item_id(i, field)).is_some_and(|id| young(&id)));
    instances.children.iter().any(|n| n.as_element().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBNET: &str = r#"<CreateSubnetResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><subnet><vpcId>vpc-1</vpcId><subnetId>subnet-9</subnetId></subnet></CreateSubnetResponse>"#;
    const RESERVATIONS: &str = r#"<DescribeInstancesResponse><reservationSet><item><reservationId>r-1</reservationId><instancesSet><item><instanceId>i-young</instanceId></item></instancesSet></item><item><reservationId>r-2</reservationId><instancesSet><item><instanceId>i-old</instanceId></item><item><instanceId>i-young2</instanceId></item></instancesSet></item></reservationSet></DescribeInstancesResponse>"#;

    #[test]
    fn a_subnet_create_names_the_subnet_not_its_vpc() {
        assert_eq!(created_ids(SUBNET.as_bytes(), "CreateSubnet", "subnetId"), vec!["subnet-9".to_string()]);
    }

    #[test]
    fn young_instances_and_emptied_reservations_are_dropped() {
        let out = drop_items(RESERVATIONS.as_bytes(), "reservationSet", "instanceId", &|id| id.starts_with("i-young")).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("r-1") && !s.contains("i-young") && s.contains("i-old"), "{s}");
        assert!(drop_items(RESERVATIONS.as_bytes(), "reservationSet", "instanceId", &|_| false).is_none());
    }
}
