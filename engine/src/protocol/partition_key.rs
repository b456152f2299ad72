//! Partition keys: `matching/<symbol>`, `contract/<symbol>`, `wallet/<shard>`, `otc/<shard>`.
//! The rendered string is what the DB (`partitions.partition_key`, the advisory lock's
//! `hashtext`), `/internal/status` and the metrics carry, so it never changes shape.

use engine_config::{ExchangeConfig, Module};
use std::fmt;
use std::str::FromStr;

/// One partition of a region, by module and market or user shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey(String);

/// The shard of a user in a module with `shards` shards (`user_id mod shards`).
pub fn shard_of(user_id: i64, shards: u32) -> u32 {
    (user_id.rem_euclid(shards.max(1) as i64)) as u32
}

impl PartitionKey {
    /// A spot market's partition.
    pub fn matching(symbol: &str) -> Self {
        PartitionKey(format!("matching/{symbol}"))
    }
    /// A perpetual's partition.
    pub fn contract(symbol: &str) -> Self {
        PartitionKey(format!("contract/{symbol}"))
    }
    pub fn wallet(shard: u32) -> Self {
        PartitionKey(format!("wallet/{shard}"))
    }
    pub fn otc(shard: u32) -> Self {
        PartitionKey(format!("otc/{shard}"))
    }
    /// The wallet shard of `user_id`.
    pub fn wallet_of(user_id: i64, ex: &ExchangeConfig) -> Self {
        Self::wallet(shard_of(user_id, ex.wallet_shards))
    }
    /// The OTC shard of `user_id`.
    pub fn otc_of(user_id: i64, ex: &ExchangeConfig) -> Self {
        Self::otc(shard_of(user_id, ex.otc_shards))
    }

    /// The partitions of `module`, in index order (market order as configured, shard 0..n).
    pub fn of_module(ex: &ExchangeConfig, module: Module) -> Vec<PartitionKey> {
        match module {
            Module::Matching => ex.spot_markets.iter().map(|m| Self::matching(&m.symbol)).collect(),
            Module::Contract => ex.perp_markets.iter().map(|m| Self::contract(&m.symbol)).collect(),
            Module::Wallet => (0..ex.wallet_shards).map(Self::wallet).collect(),
            Module::Otc => (0..ex.otc_shards).map(Self::otc).collect(),
        }
    }

    /// Every partition of the region: spot markets, wallet shards, OTC shards, perpetuals.
    pub fn all(ex: &ExchangeConfig) -> Vec<PartitionKey> {
        [Module::Matching, Module::Wallet, Module::Otc, Module::Contract].into_iter().flat_map(|m| Self::of_module(ex, m)).collect()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PartitionKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for PartitionKey {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<String> for PartitionKey {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl FromStr for PartitionKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("not a partition key: {s:?}");
        let (module, rest) = s.split_once('/').ok_or_else(bad)?;
        match module {
            "matching" | "contract" if !rest.is_empty() => Ok(PartitionKey(s.to_string())),
            "wallet" | "otc" => rest.parse::<u32>().map(|_| PartitionKey(s.to_string())).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl serde::Serialize for PartitionKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for PartitionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses() {
        for (k, s) in [
            (PartitionKey::matching("BTC-USD"), "matching/BTC-USD"),
            (PartitionKey::contract("BTC-PERP"), "contract/BTC-PERP"),
            (PartitionKey::wallet(3), "wallet/3"),
            (PartitionKey::otc(0), "otc/0"),
        ] {
            assert_eq!(k.to_string(), s);
            assert_eq!(s.parse::<PartitionKey>(), Ok(k));
        }
        assert!("wallet/x".parse::<PartitionKey>().is_err());
        assert!("books/1".parse::<PartitionKey>().is_err());
        assert_eq!(shard_of(-1, 4), 3);
        assert_eq!(shard_of(5, 0), 0);
    }
}
