//! Writer → destination → reader round trips, and what the reader refuses.

use backup_apis::database::DatabaseType;

use super::writer::Source;
use super::*;
use crate::destination::Destination;
use crate::destination::local::LocalDir;

fn source() -> Source {
    Source {
        engine: DatabaseType::VictoriaMetrics,
        precision: Precision::Ms,
        url: "http://vm:8428".into(),
        database: None,
        selector: None,
        owner: Some(Owner {
            namespace: "ns".into(),
            name: "b".into(),
            uid: "6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a".into(),
        }),
    }
}

async fn write(dest: &LocalDir, location: &str, series: usize, per_series: usize) -> Header {
    let mut w = BackupWriter::new(dest.create(location).await.unwrap(), source()).unwrap();
    for s in 0..series {
        w.series(vec![("b".into(), s.to_string()), ("__name__".into(), "m".into())]).await.unwrap();
        let ts: Vec<i64> = (0..per_series as i64).map(|i| i * 1000 + s as i64).collect();
        let vs: Vec<f64> = ts.iter().map(|&t| t as f64 / 7.0).collect();
        w.samples(&ts, &vs).await.unwrap();
        // The same series again (as a database splitting it would send it) counts once.
        w.series(vec![("__name__".into(), "m".into()), ("b".into(), s.to_string())]).await.unwrap();
        w.samples(&[-1], &[f64::NAN]).await.unwrap();
    }
    w.finish().await.unwrap().0
}

#[tokio::test]
async fn round_trip_and_corruption() {
    let tmp = std::env::temp_dir().join(format!("format-test-{}", std::process::id()));
    let dest = LocalDir::new(&tmp);
    let header = write(&dest, "a/b.1.tsdb", 100, 20_000).await;
    assert_eq!((header.series, header.samples), (100, 100 * 20_001));
    assert_eq!(header.owner.as_ref().map(|o| o.name.as_str()), Some("b"));
    assert_eq!((header.min_time, header.max_time), (Some(-1), Some(19_999_000 + 99)));

    let mut r = BackupReader::open_verified(&dest, "a/b.1.tsdb", None).await.unwrap();
    assert_eq!(r.header(), &header);
    let (mut series, mut samples) = (0, 0);
    while let Some(record) = r.next().await.unwrap() {
        match record {
            Record::Series(labels) => {
                assert_eq!(labels[0].0, "__name__", "labels are sorted");
                series += 1;
            }
            Record::Samples { timestamps, .. } => samples += timestamps.len() as u64,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((series, samples), (100, header.samples));

    // One flipped payload byte: refused before any record is read.
    let path = tmp.join("a/b.1.tsdb");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = BackupReader::open_verified(&dest, "a/b.1.tsdb", None).await.err().unwrap();
    assert!(format!("{err:#}").contains("SHA-256"), "{err:#}");
    // Cut short: the size check.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = BackupReader::open_verified(&dest, "a/b.1.tsdb", None).await.err().unwrap();
    assert!(format!("{err:#}").contains("bytes"), "{err:#}");
    // No header (a file whose writing never finished).
    std::fs::write(&path, vec![0; HEADER_SIZE + 10]).unwrap();
    let err = BackupReader::open_verified(&dest, "a/b.1.tsdb", None).await.err().unwrap();
    assert!(format!("{err:#}").contains("not a complete backup"), "{err:#}");
    std::fs::remove_dir_all(&tmp).unwrap();
}
