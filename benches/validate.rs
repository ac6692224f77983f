//! Validation cost per payload: the largest legal modify (16 keys of 32 bytes, 16 values of 1000
//! bytes) and a typical small one. Run: `cargo bench --bench validate`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use timgate::tencent::catalogue::ApiKind;
use timgate::validate::validate;

fn largest() -> Vec<u8> {
    let attrs: Vec<_> = (0..16)
        .map(|i| json!({"key": format!("{i:032}"), "value": "v".repeat(1000)}))
        .collect();
    json!({"GroupId": "@TGS#aC5SZEAEF", "GroupAttr": attrs})
        .to_string()
        .into_bytes()
}

fn small() -> Vec<u8> {
    br#"{"GroupId":"@TGS#aC5SZEAEF","GroupAttr":[{"key":"song","value":"intro"},{"key":"seat","value":"3"}]}"#.to_vec()
}

fn bench(c: &mut Criterion) {
    let (large, small) = (largest(), small());
    assert!(validate(ApiKind::ModifyGroupAttr, &large).is_ok());
    c.bench_function("validate modify largest legal (16 x 1000 B)", |b| {
        b.iter(|| validate(ApiKind::ModifyGroupAttr, black_box(&large)))
    });
    c.bench_function("validate modify small (2 keys)", |b| {
        b.iter(|| validate(ApiKind::ModifyGroupAttr, black_box(&small)))
    });
    c.bench_function("validate get", |b| {
        b.iter(|| {
            validate(
                ApiKind::GetGroupAttr,
                black_box(br#"{"GroupId":"@TGS#aC5SZEAEF"}"#),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
