//! The UserData every launched host gets: `templates/cloud-init.yaml`, rendered for the
//! project and the host's role. Pure. cloud-init runs it at first boot on AWS (packages,
//! the distro's own etcd and PostgreSQL masked, a DB host's data volume mounted at
//! PostgreSQL's directory). Lab hosts in image mode run it with the image's own cloud-init
//! (`tests/fresh_image.rs`); lab hosts sharing this machine's root do not.

use crate::model::HostSpec;

const CLOUD_INIT: &str = include_str!("../../templates/cloud-init.yaml");

/// The cloud-config for `host` of `project` (plain text; the SDK call base64-encodes it).
pub fn user_data(project: &str, host: &HostSpec) -> String {
    let db_volume = if host.data_volume_gib.is_some() { "yes" } else { "no" };
    CLOUD_INIT.replace("{{project}}", project).replace("{{db_volume}}", db_volume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(data_volume_gib: Option<u32>) -> HostSpec {
        HostSpec {
            key: "r/instance/db-0".into(),
            name: "exa-primary-db-0".into(),
            role: "db".into(),
            index: 0,
            az: "r-1a".into(),
            subnet_key: "r/subnet/r-1a".into(),
            sg_key: "r/sg/db".into(),
            instance_type: "r6i.large".into(),
            modules: vec![],
            gateway: false,
            database: data_volume_gib.is_some(),
            public_ip: false,
            data_volume_gib,
        }
    }

    #[test]
    fn the_cloud_config_is_rendered_for_the_project_and_role() {
        let db = user_data("exa", &host(Some(100)));
        assert!(db.starts_with("#cloud-config\n"), "cloud-init reads only a #cloud-config first line");
        assert!(!db.contains("{{"), "every placeholder is filled: {db}");
        assert!(db.contains("/opt/exa/bin") && db.contains(r#"[ "yes" = yes ]"#));
        // The distro's own services are masked before the packages module installs them.
        let (boot, packages) = (db.find("bootcmd:").unwrap(), db.find("packages:").unwrap());
        let mask = db.find("[systemctl, mask, etcd.service, postgresql.service, postgresql@15-main.service]").unwrap();
        assert!(boot < mask && mask < packages);
        assert!(db.contains("create_main_cluster = false"));
        assert!(user_data("exa", &host(None)).contains(r#"[ "no" = yes ]"#), "an app host formats no volume");
    }
}
