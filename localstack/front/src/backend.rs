//! LocalStack itself, read directly (not through the front's faults): the checkers and the
//! zone reader see what LocalStack holds even while the front fails calls on purpose.

#[derive(Clone)]
pub struct Backend {
    pub url: String,
    pub route53: aws_sdk_route53::Client,
}

impl Backend {
    pub async fn new(url: &str) -> Backend {
        let creds = aws_credential_types::Credentials::new("test", "test", None, None, "labfront");
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(crate::aws::GLOBAL_REGION))
            .endpoint_url(url)
            .credentials_provider(creds)
            .load()
            .await;
        Backend { url: url.to_string(), route53: aws_sdk_route53::Client::new(&sdk) }
    }
}
