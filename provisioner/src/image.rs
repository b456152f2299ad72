//! Which machine images `provision` can deploy onto. Pure: the image is what EC2's
//! DescribeImages said (`cloud::observe`), the verdict is made here, before anything is
//! launched.
//!
//! Deploy installs PostgreSQL 15, Patroni's dependencies and etcd from the image's own apt
//! sources, and the engine binaries need glibc 2.34 or newer. Of the images an operator is
//! likely to pick, only Debian 12 (bookworm) has all of it: Ubuntu 16.04-22.04 lack
//! `postgresql-15` (and 16.04's glibc is 2.23), Amazon Linux has no apt. So the supported
//! family is Debian 12 on x86_64: Debian's own images (owner 136693071363, names
//! `debian-12-amd64-*`), or an image built from one whose name says so (contains
//! `debian-12` or `bookworm`).

use crate::model::Image;

/// Debian's AWS account, which publishes the official Debian images.
pub const DEBIAN_OWNER: &str = "136693071363";
/// The name filter of Debian 12's official x86_64 images.
pub const DEBIAN_12_NAME: &str = "debian-12-amd64-*";

/// Why `image` cannot carry a deployment (None: it can).
pub fn unsupported(image: &Image) -> Option<String> {
    let name = image.name.to_ascii_lowercase();
    let debian_12 = name.contains("debian-12") || name.contains("bookworm");
    if !debian_12 {
        return Some(format!(
            "{} ({:?}) is not a Debian 12 image: deploy installs postgresql-15, Patroni and etcd from the image's apt sources and runs engines \
             built for glibc 2.34+, which of the likely images only Debian 12 (bookworm) has",
            image.id, image.name
        ));
    }
    if image.architecture != "x86_64" {
        return Some(format!("{} ({:?}) is built for {}: the engines are built for x86_64", image.id, image.name, image.architecture));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, arch: &str) -> Image {
        Image { id: "ami-1".into(), name: name.into(), architecture: arch.into() }
    }

    #[test]
    fn debian_12_on_x86_64_is_the_supported_family() {
        assert_eq!(unsupported(&image("debian-12-amd64-20241201-1948", "x86_64")), None);
        assert_eq!(unsupported(&image("exa-engine-bookworm-2026-11", "x86_64")), None);
        let xenial = unsupported(&image("ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-20211001", "x86_64")).unwrap();
        assert!(xenial.contains("not a Debian 12 image") && xenial.contains("postgresql-15"), "{xenial}");
        let arm = unsupported(&image("debian-12-arm64-20241201-1948", "arm64")).unwrap();
        assert!(arm.contains("arm64") && arm.contains("x86_64"), "{arm}");
    }
}
