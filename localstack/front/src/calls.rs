//! Which AWS operations each client made, as IAM names them (`ec2:RunInstances`). A client is
//! named by the SDK's app id (`app/<name>` in its user agent), so `provision`'s calls are told
//! from the tests' own: `GET /_front/calls` is what an IAM policy for that client must allow.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::aws::Call;

/// Calls by client, then by `service:Action`: how many.
#[derive(Default)]
pub struct CallLog {
    seen: Mutex<BTreeMap<String, BTreeMap<String, u64>>>,
}

impl CallLog {
    /// Records `call`, made by the client whose user agent is `agent`. Every call counts, also
    /// one the front then refuses (a fault, a throttle): AWS checks permission first.
    pub fn record(&self, call: &Call, agent: &str) {
        let client = app_id(agent).unwrap_or("unnamed").to_string();
        let op = format!("{}:{}", call.service, call.action);
        let mut seen = self.seen.lock().expect("call log");
        *seen.entry(client).or_default().entry(op).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        self.seen.lock().expect("call log").clone()
    }
}

/// `app/<name>` among the user agent's tokens.
fn app_id(agent: &str) -> Option<&str> {
    agent.split_whitespace().find_map(|t| t.strip_prefix("app/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdks_app_id_names_the_client() {
        let ua = "aws-sdk-rust/1.3.9 ua/2.1 api/ec2/1.0 os/linux lang/rust#1.95.0 app/provision m/E";
        assert_eq!(app_id(ua), Some("provision"));
        assert_eq!(app_id("aws-sdk-rust/1.3.9 os/linux"), None);
    }
}
