//! In-memory matching throughput and per-order latency on one core.
//!
//! `cargo bench -p engine --bench matching`
//! Flow: limit orders (90%) and IOC (10%) around a fixed mid, prices +-50 ticks, qty 1-100,
//! plus cancels of random resting orders (1 cancel per 2 orders) so the book stays bounded.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::book::{Book, Fill, NewOrder, OrderKind, Side};
use engine::settle::Fees;
use engine::spot::{Effects, SpotMarket};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::time::Instant;

#[derive(Clone, Copy)]
enum Op {
    Place(NewOrder),
    Cancel(u64),
}

fn flow(n: usize) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..n)
        .map(|i| {
            if i % 3 == 2 {
                Op::Cancel(rng.gen())
            } else {
                let side = if rng.gen_bool(0.5) { Side::Buy } else { Side::Sell };
                let off: i64 = rng.gen_range(-50..=50);
                let price = 10_000 + off;
                let kind = if rng.gen_bool(0.1) { OrderKind::Ioc } else { OrderKind::Limit };
                Op::Place(NewOrder {
                    id: 0,
                    user_id: rng.gen_range(1..1000),
                    side,
                    kind,
                    price_ticks: price,
                    qty_lots: rng.gen_range(1..=100),
                    quote_budget: 0,
                })
            }
        })
        .collect()
}

struct Runner {
    book: Book,
    live: Vec<i64>,
    next_id: i64,
    fills: Vec<Fill>,
}

impl Runner {
    fn new() -> Self {
        Runner { book: Book::new(), live: Vec::new(), next_id: 1, fills: Vec::with_capacity(64) }
    }
    #[inline]
    fn step(&mut self, op: &Op) {
        match *op {
            Op::Place(mut o) => {
                o.id = self.next_id;
                self.next_id += 1;
                self.fills.clear();
                let r = self.book.place(o, &mut self.fills);
                if r.remaining_qty > 0 && r.status == engine::book::PlaceStatus::Open {
                    self.live.push(o.id);
                }
            }
            Op::Cancel(x) => {
                if !self.live.is_empty() {
                    let i = (x as usize) % self.live.len();
                    let id = self.live.swap_remove(i);
                    self.book.cancel(id);
                }
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let ops = flow(1 << 20);
    let mut g = c.benchmark_group("matching");
    g.throughput(Throughput::Elements(1));
    let mut r = Runner::new();
    let mut i = 0usize;
    g.bench_function("book_op", |b| {
        b.iter(|| {
            r.step(&ops[i & ((1 << 20) - 1)]);
            i += 1;
        })
    });
    // Book plus settlement (fees, held funds, ledger postings) as the leader runs it.
    let mut m = SpotMarket::new(Fees { maker_bps: 10, taker_bps: 20 }, -1000);
    let mut next = 1i64;
    let mut live: Vec<i64> = Vec::new();
    let mut out = Effects::default();
    let mut j = 0usize;
    g.bench_function("spot_market_op", |b| {
        b.iter(|| {
            match ops[j & ((1 << 20) - 1)] {
                Op::Place(mut o) => {
                    o.id = next;
                    next += 1;
                    out.clear();
                    let (_, reserved) = engine::settle::reservation(&o, m.fees).unwrap();
                    let u = m.place(o, reserved, &mut out).unwrap();
                    if u.status == "open" {
                        live.push(o.id);
                    }
                }
                Op::Cancel(x) => {
                    if !live.is_empty() {
                        let id = live.swap_remove((x as usize) % live.len());
                        out.postings.clear();
                        m.cancel(id, &mut out.postings);
                    }
                }
            }
            j += 1;
        })
    });
    g.finish();
    latency(&ops);
}

/// Per-operation latency percentiles (timer overhead included).
fn latency(ops: &[Op]) {
    let mut r = Runner::new();
    for op in ops.iter().take(200_000) {
        r.step(op); // warm up to a steady-state book
    }
    let n = 2_000_000;
    let mut ns: Vec<u32> = Vec::with_capacity(n);
    let t0 = Instant::now();
    for k in 0..n {
        let op = &ops[k & (ops.len() - 1)];
        let t = Instant::now();
        r.step(op);
        ns.push(t.elapsed().as_nanos() as u32);
    }
    let total = t0.elapsed();
    ns.sort_unstable();
    let p = |q: f64| ns[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "matching/latency: {} ops in {:?} ({:.0} ops/s incl. timers); p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns; resting orders {}",
        n,
        total,
        n as f64 / total.as_secs_f64(),
        p(0.5),
        p(0.99),
        p(0.999),
        ns[n - 1],
        r.book.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
