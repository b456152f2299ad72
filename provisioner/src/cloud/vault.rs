//! The project's vault: the operator key, the pinned host keys and the deployment secrets as
//! SecureString parameters `/provision/<project>/vault/<item>` in each region's Parameter
//! Store (encrypted with the account's `aws/ssm` key), so that any machine with the config and
//! AWS credentials can act on the project. `crate::vault` decides what to read and write.

use std::collections::BTreeMap;

use aws_sdk_ssm::types::{ParameterTier, ParameterType};

use super::{Cloud, CloudError};

impl Cloud {
    fn vault_path(&self) -> String {
        format!("/provision/{}/vault/", self.project)
    }

    /// Every item of the vault in `region`, decrypted. Values never reach a log or an error.
    pub async fn vault_items(&self, region: &str) -> Result<BTreeMap<String, String>, CloudError> {
        let c = self.ssm(region)?;
        let path = self.vault_path();
        let mut pages = c.get_parameters_by_path().path(&path).recursive(true).with_decryption(true).into_paginator().send();
        let mut items = BTreeMap::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err_in("ssm", "GetParametersByPath", &path, region, e))?;
            for p in page.parameters() {
                if let (Some(name), Some(value)) = (p.name().and_then(|n| n.strip_prefix(&path)), p.value()) {
                    items.insert(name.to_string(), value.to_string());
                }
            }
        }
        Ok(items)
    }

    /// Writes one item in `region`. `overwrite` false: created once, and Ok(false) when it
    /// exists already (the caller compares). Intelligent-Tiering: a standard parameter up to
    /// 4 KB, advanced beyond (a large fleet's pinned host keys).
    pub async fn vault_put(&self, region: &str, item: &str, value: &str, overwrite: bool) -> Result<bool, CloudError> {
        let name = format!("{}{item}", self.vault_path());
        let r = self
            .ssm(region)?
            .put_parameter()
            .name(&name)
            .value(value)
            .r#type(ParameterType::SecureString)
            .tier(ParameterTier::IntelligentTiering)
            .overwrite(overwrite)
            .send()
            .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_already_exists()) => Ok(false),
            Err(e) => Err(self.err_in("ssm", "PutParameter", &name, region, e)),
        }
    }

    /// Removes every parameter of the project in `region` (failover state and vault): `down`.
    pub async fn forget_project_parameters(&self, region: &str) -> Result<usize, CloudError> {
        let c = self.ssm(region)?;
        let path = format!("/provision/{}/", self.project);
        let mut names = Vec::new();
        let mut pages = c.get_parameters_by_path().path(&path).recursive(true).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err_in("ssm", "GetParametersByPath", &path, region, e))?;
            names.extend(page.parameters().iter().filter_map(|p| p.name().map(str::to_string)));
        }
        for chunk in names.chunks(10) {
            c.delete_parameters()
                .set_names(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.err_in("ssm", "DeleteParameters", &path, region, e))?;
        }
        Ok(names.len())
    }
}
