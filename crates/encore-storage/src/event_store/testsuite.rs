//! The conformance suite of [`EventStore`]: written once, run against every backend.
//! `open(name, spec)` must give a handle on the table `name` (the same name: the same table, so
//! a second call after the first handle is dropped reopens it).

use super::EventStore;
use crate::StorageError;
use crate::event_log::TableSpec;
use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::collections::BTreeMap;
use std::sync::Arc;

type Open<'a> = &'a dyn Fn(&str, TableSpec) -> Box<dyn EventStore>;

const DAY: i64 = 86_400_000;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("v", DataType::Int64, false),
        Field::new("note", DataType::Utf8, true),
    ]))
}

fn spec(name: &'static str) -> TableSpec {
    TableSpec {
        name,
        schema: schema(),
        ts_column: "ts_ms",
        id_column: "id",
        high_cardinality: &["id"],
        times: &[],
        lake_names: &[],
    }
}

/// Rows `(id, ts_ms, v)`.
fn batch(rows: &[(String, i64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| (r.2 % 3 == 0).then(|| format!("n{}", r.2)))
                    .collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("a batch of the suite's schema")
}

fn rows(n: i64, day0: i64, tag: &str) -> Vec<(String, i64, i64)> {
    (0..n)
        .map(|i| (format!("{tag}-{i}"), day0 * DAY + (i % 3) * DAY + i, i))
        .collect()
}

/// Every stored row with its time within `[from, to]`, by id.
fn read(s: &dyn EventStore, from: i64, to: i64) -> BTreeMap<String, (i64, i64)> {
    let mut out = BTreeMap::new();
    s.scan(from, to, None, &mut |b| {
        let id = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let v = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            if (from..=to).contains(&ts.value(i)) {
                let old = out.insert(id.value(i).to_owned(), (ts.value(i), v.value(i)));
                assert!(old.is_none(), "row {} delivered twice", id.value(i));
            }
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{}: scan: {e}", s.table()));
    out
}

fn expected(rows: &[(String, i64, i64)]) -> BTreeMap<String, (i64, i64)> {
    rows.iter().map(|r| (r.0.clone(), (r.1, r.2))).collect()
}

/// Every case, in order; panics on the first that fails, naming it.
pub fn run(open: Open<'_>) {
    appended_rows_come_back_exactly(open);
    scans_cover_their_range_and_project(open);
    acknowledged_rows_survive_a_reopen(open);
    a_batch_of_another_schema_is_refused(open);
    old_partitions_expire(open);
    a_rewrite_removes_rows_for_good(open);
    concurrent_appenders_lose_nothing(open);
}

fn appended_rows_come_back_exactly(open: Open<'_>) {
    let s = open("exact", spec("exact"));
    let all = rows(120, 20_000, "a");
    for chunk in all.chunks(17) {
        s.append(batch(chunk)).unwrap();
    }
    s.append(batch(&[])).unwrap();
    assert_eq!(read(s.as_ref(), i64::MIN, i64::MAX), expected(&all));
    s.seal().unwrap();
    assert_eq!(
        read(s.as_ref(), i64::MIN, i64::MAX),
        expected(&all),
        "sealing changed what is read"
    );
    let st = s.stats();
    assert_eq!(st.sealed_rows + st.unsealed_rows, 120, "{st:?}");
}

fn scans_cover_their_range_and_project(open: Open<'_>) {
    let s = open("ranges", spec("ranges"));
    let all = rows(90, 20_000, "r");
    s.append(batch(&all)).unwrap();
    s.seal().unwrap();
    s.append(batch(&rows(9, 20_001, "late"))).unwrap();
    let (from, to) = (20_001 * DAY, 20_002 * DAY - 1);
    let mut want: BTreeMap<_, _> = expected(&all)
        .into_iter()
        .filter(|(_, (t, _))| (from..=to).contains(t))
        .collect();
    want.extend(
        expected(&rows(9, 20_001, "late"))
            .into_iter()
            .filter(|(_, (t, _))| (from..=to).contains(t)),
    );
    assert_eq!(read(s.as_ref(), from, to), want);
    let mut widths = Vec::new();
    s.scan(i64::MIN, i64::MAX, Some(&["v", "id"]), &mut |b| {
        widths.push(b.num_columns());
        assert_eq!(b.schema().field(0).name(), "v");
        Ok(())
    })
    .unwrap();
    assert!(
        !widths.is_empty() && widths.iter().all(|w| *w == 2),
        "{widths:?}"
    );
    let e = s
        .scan(i64::MIN, i64::MAX, Some(&["nope"]), &mut |_| Ok(()))
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
}

fn acknowledged_rows_survive_a_reopen(open: Open<'_>) {
    let all = rows(60, 20_000, "d");
    {
        let s = open("durable", spec("durable"));
        s.append(batch(&all[..40])).unwrap();
        s.seal().unwrap();
        // acknowledged, never sealed: the store must still have them after a restart
        s.append(batch(&all[40..])).unwrap();
    }
    let s = open("durable", spec("durable"));
    assert_eq!(read(s.as_ref(), i64::MIN, i64::MAX), expected(&all));
}

fn a_batch_of_another_schema_is_refused(open: Open<'_>) {
    let s = open("schema", spec("schema"));
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    let e = s.append(other).unwrap_err();
    assert!(matches!(e, StorageError::SchemaMismatch { .. }), "{e}");
    let good = rows(5, 20_000, "s");
    s.append(batch(&good)).unwrap();
    assert_eq!(read(s.as_ref(), i64::MIN, i64::MAX), expected(&good));
}

fn old_partitions_expire(open: Open<'_>) {
    let s = open("expiry", spec("expiry"));
    let all = rows(30, 20_000, "e");
    s.append(batch(&all)).unwrap();
    s.seal().unwrap();
    let (_, dropped) = s.drop_before(20_001 * DAY).unwrap();
    let kept: BTreeMap<_, _> = expected(&all)
        .into_iter()
        .filter(|(_, (t, _))| *t >= 20_001 * DAY)
        .collect();
    assert_eq!(dropped as usize, all.len() - kept.len());
    assert_eq!(read(s.as_ref(), i64::MIN, i64::MAX), kept);
}

fn a_rewrite_removes_rows_for_good(open: Open<'_>) {
    let all = rows(40, 20_000, "w");
    {
        let s = open("rewrite", spec("rewrite"));
        s.append(batch(&all)).unwrap();
        s.seal().unwrap();
        let stats = s
            .rewrite(
                i64::MIN,
                i64::MAX,
                Box::new(|b: RecordBatch| {
                    let v = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
                    let keep: arrow::array::BooleanArray = (0..b.num_rows())
                        .map(|i| Some(v.value(i) % 2 == 0))
                        .collect();
                    arrow::compute::filter_record_batch(&b, &keep).map_err(StorageError::arrow)
                }),
            )
            .unwrap();
        assert_eq!((stats.rows_before, stats.rows_after), (40, 20));
    }
    let s = open("rewrite", spec("rewrite"));
    let want: BTreeMap<_, _> = expected(&all)
        .into_iter()
        .filter(|(_, (_, v))| v % 2 == 0)
        .collect();
    assert_eq!(read(s.as_ref(), i64::MIN, i64::MAX), want);
}

fn concurrent_appenders_lose_nothing(open: Open<'_>) {
    let s = open("concurrent", spec("concurrent"));
    let per: Vec<Vec<(String, i64, i64)>> = (0..4)
        .map(|t| rows(100, 20_000, &format!("t{t}")))
        .collect();
    std::thread::scope(|sc| {
        for mine in &per {
            let s = &s;
            sc.spawn(move || {
                for chunk in mine.chunks(7) {
                    s.append(batch(chunk)).unwrap();
                }
            });
        }
    });
    let want: BTreeMap<_, _> = per.iter().flat_map(|r| expected(r)).collect();
    assert_eq!(read(s.as_ref(), i64::MIN, i64::MAX), want);
}
