//! What the front adds per call: N DescribeVpcs direct to LocalStack, then through a running
//! front. `cargo run --release -p labfront --example front_latency -- [N] [front] [localstack]`
//! (defaults 500, http://127.0.0.1:4567, http://127.0.0.1:4566).

use aws_config::retry::RetryConfig;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use std::time::Instant;

async fn client(url: &str) -> aws_sdk_ec2::Client {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("test", "test", None, None, "bench"))
        .retry_config(RetryConfig::disabled())
        .load()
        .await;
    aws_sdk_ec2::Client::new(&sdk)
}

/// (p50, p99) in µs of `n` DescribeVpcs calls.
async fn measure(url: &str, n: usize) -> anyhow::Result<(u128, u128)> {
    let c = client(url).await;
    c.describe_vpcs().send().await?; // warm the connection
    let mut us = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        c.describe_vpcs().send().await?;
        us.push(t0.elapsed().as_micros());
    }
    us.sort_unstable();
    Ok((us[n / 2], us[(n * 99 / 100).min(n - 1)]))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(500).max(1);
    let front = args.get(2).map(String::as_str).unwrap_or("http://127.0.0.1:4567");
    let direct = args.get(3).map(String::as_str).unwrap_or("http://127.0.0.1:4566");
    let (d50, d99) = measure(direct, n).await?;
    let (f50, f99) = measure(front, n).await?;
    println!("direct  {direct}: p50 {d50} µs, p99 {d99} µs ({n} DescribeVpcs)");
    println!("front   {front}: p50 {f50} µs, p99 {f99} µs");
    println!("added: p50 {} µs, p99 {} µs", f50 as i128 - d50 as i128, f99 as i128 - d99 as i128);
    Ok(())
}
