//! KPL aggregation against the reference implementation: the Python `aws-kinesis-agg` package
//! (installed into the venv of `scripts/aws.sh`, whose Python is `$CDCD_TEST_DUCKDB_PYTHON`).
//! Random user records are aggregated by us and deaggregated by it, and aggregated by it and
//! deaggregated by us; both sides must give back exactly the records that went in.
//!
//! One quirk of the reference decides the workload: its deaggregator gives a record without an
//! explicit hash key the first entry of the table when the aggregate has any explicit hash key
//! (it does not check the optional field's presence). So each aggregate here has an explicit hash
//! key on all of its records or on none.

use std::io::Write;
use std::process::{Command, Stdio};

use bytes::Bytes;
use cdcd_kinesis::kpl::{self, UserRecord};
use serde_json::{json, Value};

const SCRIPT: &str = r#"
import base64, json, sys
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

request = json.load(sys.stdin)
if sys.argv[1] == "deaggregate":
    out = []
    for data in request:
        raw = {"Data": bytes.fromhex(data), "PartitionKey": "outer", "SequenceNumber": "1",
               "ApproximateArrivalTimestamp": 0}
        users = []
        for r in iter_deaggregate_records([raw], data_format="Boto3"):
            k = r["kinesis"]
            assert k.get("aggregated") is True, "the reference did not see an aggregated record"
            users.append({"pk": k["partitionKey"], "ehk": k["explicitHashKey"],
                          "data": base64.b64decode(k["data"]).hex()})
        out.append(users)
else:
    out = []
    for users in request:
        aggregator = RecordAggregator()
        for u in users:
            full = aggregator.add_user_record(u["pk"], bytes.fromhex(u["data"]), u["ehk"])
            assert full is None, "aggregate unexpectedly full"
        out.append(aggregator.clear_and_get().get_contents()[2].hex())
json.dump(out, sys.stdout)
"#;

fn python(mode: &str, request: &Value) -> Value {
    let python = std::env::var("CDCD_TEST_DUCKDB_PYTHON").unwrap_or_else(|_| {
        panic!(
            "CDCD_TEST_DUCKDB_PYTHON is not set: run scripts/services.sh start and source \
             /tmp/cdcd-services.env"
        )
    });
    let mut child = Command::new(&python)
        .args(["-c", SCRIPT, mode])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{python} ({mode}) failed (is aws-kinesis-agg installed? scripts/aws.sh install): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from the reference")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `count` aggregates' worth of random user records: keys from a small pool (so the key table
/// is shared) with non-ASCII ones, data of 0 to 3,000 random bytes, empty data included.
fn random_aggregates(seed: u64, count: usize) -> Vec<Vec<UserRecord>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let keys: Vec<String> = (0..40)
        .map(|i| match i % 4 {
            0 => format!("shop.orders.{}", rng.u64(..)),
            1 => format!("ключ-{i}-€"),
            2 => "k".repeat(rng.usize(1..=256)),
            _ => format!("{i}"),
        })
        .collect();
    (0..count)
        .map(|_| {
            let with_hash_keys = rng.bool();
            (0..rng.usize(1..=60))
                .map(|_| {
                    let len = if rng.u8(..) < 20 {
                        0
                    } else {
                        rng.usize(1..3000)
                    };
                    UserRecord {
                        partition_key: keys[rng.usize(..keys.len())].clone(),
                        explicit_hash_key: with_hash_keys
                            .then(|| (rng.u128(..) >> rng.u32(0..128)).to_string()),
                        data: Bytes::from((0..len).map(|_| rng.u8(..)).collect::<Vec<u8>>()),
                    }
                })
                .collect()
        })
        .collect()
}

fn to_json(records: &[UserRecord]) -> Value {
    records
        .iter()
        .map(|r| json!({"pk": r.partition_key, "ehk": r.explicit_hash_key, "data": hex(&r.data)}))
        .collect()
}

fn from_json(records: &Value) -> Vec<UserRecord> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| UserRecord {
            partition_key: r["pk"].as_str().unwrap().into(),
            explicit_hash_key: r["ehk"].as_str().map(Into::into),
            data: Bytes::from(unhex(r["data"].as_str().unwrap())),
        })
        .collect()
}

#[test]
fn ours_aggregated_reference_deaggregates() {
    let aggregates = random_aggregates(4, 150);
    let encoded: Vec<Value> = aggregates
        .iter()
        .map(|records| Value::from(hex(&kpl::aggregate(records))))
        .collect();
    let decoded = python("deaggregate", &Value::from(encoded));
    let decoded = decoded.as_array().unwrap();
    assert_eq!(decoded.len(), aggregates.len());
    let mut users = 0;
    for (i, (sent, got)) in aggregates.iter().zip(decoded).enumerate() {
        assert_eq!(&from_json(got), sent, "aggregate {i}");
        users += sent.len();
    }
    println!(
        "aws-kinesis-agg deaggregated {} aggregates of ours into the same {users} user records",
        aggregates.len()
    );
}

#[test]
fn reference_aggregated_ours_deaggregates() {
    let aggregates = random_aggregates(5, 150);
    let request: Vec<Value> = aggregates.iter().map(|r| to_json(r)).collect();
    let encoded = python("aggregate", &Value::from(request));
    let encoded = encoded.as_array().unwrap();
    assert_eq!(encoded.len(), aggregates.len());
    let mut users = 0;
    for (i, (sent, data)) in aggregates.iter().zip(encoded).enumerate() {
        let data = unhex(data.as_str().unwrap());
        assert!(kpl::is_aggregated(&data), "aggregate {i}");
        assert_eq!(&kpl::deaggregate(&data).unwrap(), sent, "aggregate {i}");
        // Same input, same table order: the reference's bytes are exactly ours.
        assert_eq!(data, kpl::aggregate(sent), "aggregate {i}: bytes differ");
        users += sent.len();
    }
    println!(
        "deaggregated {} aggregates from aws-kinesis-agg into the same {users} user records \
         (and byte-identical to our encoding)",
        aggregates.len()
    );
}
