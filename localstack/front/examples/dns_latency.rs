//! DNS answer latency of a running labfront: N queries (default 2000) of one record, one at a
//! time over UDP; prints p50/p99.
//!
//! `cargo run -p labfront --example dns_latency -- --server 127.0.0.1:1053 --name www.example.com. [--count 2000]`

use clap::Parser;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use std::time::{Duration, Instant};

const ANSWER_TIMEOUT_MS: u64 = 1000;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:1053")]
    server: std::net::SocketAddr,
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "A")]
    rtype: RecordType,
    #[arg(long, default_value_t = 2000)]
    count: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(ANSWER_TIMEOUT_MS)))?;
    sock.connect(args.server)?;
    let name = Name::from_ascii(&args.name)?;
    let mut took = Vec::with_capacity(args.count);
    let (mut lost, mut empty) = (0usize, 0usize);
    let mut buf = vec![0u8; 4096];
    for i in 0..args.count {
        let mut m = Message::new();
        m.set_id(i as u16).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
        m.add_query(Query::query(name.clone(), args.rtype));
        let start = Instant::now();
        sock.send(&m.to_vec()?)?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                took.push(start.elapsed());
                empty += usize::from(Message::from_vec(&buf[..n])?.answers().is_empty());
            }
            Err(_) => lost += 1,
        }
    }
    took.sort();
    let pct = |p: usize| took.get((took.len() * p / 100).min(took.len().saturating_sub(1))).copied().unwrap_or_default();
    println!(
        "{} queries of {} {}: p50 {:?}, p99 {:?}, max {:?}; {lost} lost, {empty} without answers",
        args.count,
        args.name,
        args.rtype,
        pct(50),
        pct(99),
        took.last().copied().unwrap_or_default()
    );
    Ok(())
}
