//! The example node config in README.md parses as a `NodeConfig`.

#[test]
fn readme_example_node_config_parses() {
    let readme = include_str!("../README.md");
    let start = readme.find("```toml\n").expect("toml block") + "```toml\n".len();
    let end = start + readme[start..].find("```").expect("end of block");
    let cfg = engine_config::NodeConfig::from_toml_str(&readme[start..end]).expect("README example parses");
    assert_eq!(cfg.exchange.perp_markets.len(), 1);
    assert_eq!(cfg.monitor.webhook_urls.len(), 1);
}
