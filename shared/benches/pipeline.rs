//! Per-core cost of the track path for the spec's example event: parse + validate + enrich + encode.
//!
//! "Encode" is what leaves the process: the ClickHouse row (typed columns + the properties JSON string)
//! and the NDJSON record Firehose carries. (clickhouse-rs keeps its RowBinary serializer private, so the
//! row is built exactly as the insert path builds it, with its properties JSON.)
//!
//! Run: `cargo bench -p commerce-analytics --bench pipeline`. Criterion prints the time per event and the
//! throughput in events/s (single thread).

use std::hint::black_box;

use commerce_analytics::event::{RequestMeta, Validator};
use commerce_analytics::store::clickhouse::EventRow;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SPEC_EVENT: &str = r#"{
"id": "evt_abc123",
"type": "order.completed",
"timestamp": "2025-01-15T10:35:00Z",
"sessionId": "sess_xyz",
"customerId": "cust_abc123",
"properties": {
"orderId": "order_xyz789",
"total": 6791,
"currency": "USD",
"itemCount": 2,
"paymentMethod": "stripe"
},
"context": {
"ip": "203.0.113.42",
"userAgent": "Mozilla/5.0...",
"referrer": "https://google.com",
"country": "US"
}
}"#;

fn pipeline(c: &mut Criterion) {
    let v = Validator {
        limits: Default::default(),
        retention_days: 3650,
        anonymize_ip: true,
    };
    let meta = RequestMeta {
        ip: Some("198.51.100.7".parse().expect("ip")),
        user_agent: Some("Mozilla/5.0".into()),
        referrer: None,
        country: Some("US".into()),
        from_browser: true,
    };
    let now = time::OffsetDateTime::now_utc();
    let mut g = c.benchmark_group("track_pipeline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_validate_enrich_encode/spec_event", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            let event = v
                .parse(black_box(SPEC_EVENT), "demo", &meta, now)
                .expect("valid");
            let row = EventRow::from_event(&event);
            black_box(&row);
            buf.clear();
            serde_json::to_writer(&mut buf, &event).expect("encode");
            buf.push(b'\n');
            black_box(&buf);
        });
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
