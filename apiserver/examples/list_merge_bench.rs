//! Strategic merge patch and server-side apply on lists of N and 2N items (default N = 20,000): prints the time of
//! each step and its growth from N to 2N (about 2 for O(n log n); 4 for a quadratic merge). Run by hand, on a quiet
//! machine:
//!
//! `cargo run --release -p backup-apiserver --example list_merge_bench [N]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failed step ends it

use std::time::{Duration, Instant};

use backup_apis::schema::Schema;
use backup_apiserver::endpoints::patch::strategic;
use backup_apiserver::fieldmanager::{ApplyRequest, Manager, apply, take_managed_fields, track};
use backup_apiserver::request::info::Subresource;
use serde_json::{Value, json};

/// A kind with a map list keyed by `name` and a set.
fn schema() -> Schema {
    Schema::new(&json!({"type": "object", "properties": {
        "apiVersion": {"type": "string"}, "kind": {"type": "string"},
        "metadata": {"$ref": backup_apis::schema::OBJECT_META_REF},
        "spec": {"type": "object", "properties": {
            "items": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "properties": {
                          "name": {"type": "string"}, "v": {"type": "integer"}, "w": {"type": "integer"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}}}}}}))
}

fn items(from: usize, n: usize, field: &str) -> Vec<Value> {
    (from..from + n).map(|i| json!({"name": format!("item-{i}"), field: i})).collect()
}

fn tags(from: usize, n: usize) -> Vec<Value> {
    (from..from + n).map(|i| json!(format!("tag-{i}"))).collect()
}

fn object(items: Vec<Value>, tags: Vec<Value>) -> Value {
    json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup",
           "metadata": {"name": "b", "namespace": "ns"}, "spec": {"items": items, "tags": tags}})
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

/// Each step's time for lists of `n` items.
fn run(n: usize) -> Vec<(&'static str, Duration)> {
    let schema = schema();
    let mut out = Vec::new();
    let doc = object(items(0, n, "v"), tags(0, n));
    let mut reversed = items(n / 2, n, "w");
    reversed.reverse();
    let order: Vec<Value> = (0..n).rev().map(|i| json!({"name": format!("item-{i}")})).collect();
    let smp = [
        ("SMP map list, half new, reversed", json!({"spec": {"items": reversed}})),
        ("SMP set, half new", json!({"spec": {"tags": tags(n / 2, n)}})),
        ("SMP $deleteFromPrimitiveList", json!({"spec": {"$deleteFromPrimitiveList/tags": tags(n / 2, n)}})),
        ("SMP $setElementOrder, reversed", json!({"spec": {"$setElementOrder/items": order}})),
    ];
    for (name, patch) in smp {
        let mut d = doc.clone();
        out.push((name, timed(|| strategic::apply(&schema, &mut d, patch).unwrap())));
    }
    let info = &backup_apis::backup::RESOURCE;
    let req = |manager| ApplyRequest { manager, force: false, sub: &Subresource::Main };
    let empty = json!({"apiVersion": "backup.extend-k8s.io/v1", "kind": "TimeseriesDBBackup"});
    let mut first = Value::Null;
    let config = object(items(0, n, "v"), tags(0, n));
    out.push(("SSA apply, creating", timed(|| first = apply(&schema, info, empty, config, req("a")).unwrap())));
    let mut second = Value::Null;
    let config = object(items(n / 2, n, "w"), tags(n / 2, n));
    out.push(("SSA apply, second manager", timed(|| second = apply(&schema, info, first, config, req("b")).unwrap())));
    let mut third = Value::Null;
    let config = object(items(n / 4, n, "v"), tags(n / 4, n));
    out.push(("SSA re-apply, pruning", timed(|| third = apply(&schema, info, second, config, req("a")).unwrap())));
    let Value::Object(mut edited) = third.clone() else { panic!("an object") };
    edited["spec"]["items"] = Value::Array(items(0, n, "w"));
    let requested = take_managed_fields(&mut edited);
    let sub = Subresource::Main;
    out.push((
        "managedFields of an update",
        timed(|| track(&schema, info, &sub, Manager::Update("editor"), Some(&third), &mut edited, requested)),
    ));
    out
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let small = run(n);
    let large = run(2 * n);
    println!("{:<36} {:>12} {:>12} {:>7}", "step", format!("n={n}"), format!("n={}", 2 * n), "growth");
    for ((name, a), (_, b)) in small.iter().zip(&large) {
        let ratio = b.as_secs_f64() / a.as_secs_f64().max(1e-9);
        println!("{name:<36} {:>10.1}ms {:>10.1}ms {ratio:>7.2}", a.as_secs_f64() * 1e3, b.as_secs_f64() * 1e3);
    }
}
