//! Backups in object storage (issue 14), on a real S3-compatible server (`s3s-fs`, SigV4 checked): all three
//! engines backed up to and restored from S3, encrypted and in clear, sample for sample; a key rotated; a wrong key
//! and a flipped byte refused; a backup killed mid-upload leaving no object, and (on moto, which lists multipart
//! uploads) a crashed run's incomplete uploads aborted by the next run of the same object, and only those.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed step fails the test

use std::time::Duration;

use backup_apis::backup::{Destination, TimeseriesDBBackupSpec};
use backup_apis::database::DatabaseType::{InfluxDB, Prometheus as PrometheusType, VictoriaMetrics};
use backup_apis::status::Phase;
use backup_controller::destination::Destination as _;
use backup_controller::destination::locations::{LocationsFile, s3_store};
use backup_controller::destination::object::ObjectDir;
use backup_controller::testing::dataset::{float_series, influx_lines};
use backup_controller::testing::influx::Influx;
use backup_controller::testing::prometheus::Prometheus;
use backup_controller::testing::s3::{BUCKET, S3Server};
use backup_controller::testing::stack::{Stack, backup_spec, restore_spec};
use backup_controller::testing::victoria::{Victoria, assert_same};
use backup_controller::testing::wait_for;

const TIMEOUT: Duration = Duration::from_secs(180);
const NAMES: &[&str] = &["http_requests_total", "node_cpu_seconds_total", "weird:metric_name", "temperature_celsius"];

fn to(location: &str, spec: TimeseriesDBBackupSpec) -> TimeseriesDBBackupSpec {
    TimeseriesDBBackupSpec { destination: Some(Destination { location: Some(location.into()), path: None }), ..spec }
}

/// A stack whose controller has `plain` and `sealed` (encrypted) locations in one S3 server.
async fn stack_with_s3(s3: &S3Server) -> (Stack, std::path::PathBuf) {
    let mut stack = Stack::start().await;
    let key = stack.tmp.path().join("offsite.key");
    std::fs::write(&key, (0..32u8).map(|i| i.wrapping_mul(37)).collect::<Vec<_>>()).unwrap();
    stack.settings.locations = Some(LocationsFile {
        locations: vec![
            s3.location("plain", "cluster-a", None),
            s3.location("sealed", "cluster-a/sealed", Some(key.clone())),
        ],
    });
    stack.start_controller();
    (stack, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn victoria_and_prometheus_round_trips() {
    let s3 = S3Server::start().await;
    let (stack, _) = stack_with_s3(&s3).await;
    let (vm, prom) = tokio::join!(Victoria::start(), Prometheus::start());
    let (vm_data, prom_data) = (float_series(1, 100, 500, false), float_series(3, 100, 500, true));
    tokio::join!(vm.load(&vm_data), prom.load(&prom_data));
    let want_vm = vm.export().await;
    let want_prom = prom.export(NAMES).await;

    // Each engine to each location, in clear and encrypted: four backups at once (the controller runs 4).
    let cases = [
        ("vm", VictoriaMetrics, &vm.url, "plain", want_vm.len()),
        ("vm-sealed", VictoriaMetrics, &vm.url, "sealed", want_vm.len()),
        ("prom", PrometheusType, &prom.url, "plain", want_prom.len()),
        ("prom-sealed", PrometheusType, &prom.url, "sealed", want_prom.len()),
    ];
    for (name, engine, url, location, _) in cases {
        stack.create_backup(name, to(location, backup_spec(engine, url, None))).await;
    }
    let mut keys = Vec::new();
    for (name, _, _, location, samples) in cases {
        let backup = stack.wait_backup(name, Phase::Succeeded, TIMEOUT).await;
        let record = backup.status.unwrap().last_backup.unwrap();
        assert_eq!(record.destination.as_deref(), Some(location), "{name}");
        assert_eq!(record.samples, Some(samples as u64), "{name}");
        let prefix = if location == "sealed" { "cluster-a/sealed" } else { "cluster-a" };
        let key = format!("{prefix}/{}", record.location.unwrap());
        assert!(key.starts_with(&format!("{prefix}/default/{name}/{name}.")), "{key}");
        // Payload first, header block last; the encrypted objects are not the clear ones: no zstd magic.
        let bytes = std::fs::read(s3.root.join(BUCKET).join(&key)).unwrap();
        assert_eq!(&bytes[bytes.len() - 4096..][..8], b"TSDBBKP1", "{name}: the header block ends the object");
        let zstd = bytes[..4] == [0x28, 0xb5, 0x2f, 0xfd];
        assert_eq!(zstd, location == "plain", "{name}: a zstd payload only in clear");
        keys.push(key);
    }
    keys.sort();
    assert_eq!(s3.objects(), keys, "one object per backup, nothing else");
    assert!(stack.files().is_empty(), "nothing on the local volume");

    // Each restored into a fresh instance, compared sample for sample with its source.
    let (vm_plain, vm_sealed, prom_plain, prom_sealed) =
        tokio::join!(Victoria::start(), Victoria::start(), Prometheus::start(), Prometheus::start());
    let vm_targets = [("vm", &vm_plain), ("vm-sealed", &vm_sealed)];
    let prom_targets = [("prom", &prom_plain), ("prom-sealed", &prom_sealed)];
    for (name, target) in vm_targets {
        stack.create_restore(&format!("{name}-back"), restore_spec(name, VictoriaMetrics, &target.url, None)).await;
    }
    for (name, target) in prom_targets {
        stack.create_restore(&format!("{name}-back"), restore_spec(name, PrometheusType, &target.url, None)).await;
    }
    for (name, target) in vm_targets {
        stack.wait_restore(&format!("{name}-back"), Phase::Succeeded, TIMEOUT).await;
        assert_same(&target.export().await, &want_vm);
    }
    for (name, target) in prom_targets {
        stack.wait_restore(&format!("{name}-back"), Phase::Succeeded, TIMEOUT).await;
        assert!(target.export(NAMES).await == want_prom, "{name}: Prometheus samples differ after the round trip");
    }
    // SigV4 is checked: the same requests signed with a wrong secret are refused.
    let wrong = stack.tmp.path().join("wrong-secret");
    std::fs::write(&wrong, "not-the-secret").unwrap();
    let mut spec = s3.location("plain", "cluster-a", None).s3.unwrap();
    spec.secret_access_key_file = Some(wrong);
    let connector = backup_controller::http::transport::Connector::new(Duration::from_secs(10)).unwrap();
    let forged = s3_store(&spec, connector.default_transport(), Duration::from_secs(10)).unwrap();
    let vm_location = keys.iter().find(|k| k.starts_with("cluster-a/default/vm/")).unwrap();
    let err = forged.open(vm_location.strip_prefix("cluster-a/").unwrap()).await.err().expect("refused");
    assert!(format!("{err:#}").contains("403") || format!("{err:#}").contains("Signature"), "{err:#}");
}

/// The cluster lost with its API server's store: a new cluster's restore finds the backup in the bucket by the
/// TimeseriesDBBackup's name (`spec.backupRef.location`), though no TimeseriesDBBackup exists any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_cluster_is_lost_a_restore_finds_the_backup_in_its_location() {
    let s3 = S3Server::start().await;
    let vm = Victoria::start().await;
    vm.load(&float_series(1, 100, 500, false)).await;
    let want = vm.export().await;
    let (first, _) = stack_with_s3(&s3).await;
    first.create_backup("vm", to("sealed", backup_spec(VictoriaMetrics, &vm.url, None))).await;
    let id = first.wait_backup("vm", Phase::Succeeded, TIMEOUT).await.status.unwrap().last_backup.unwrap().id;
    drop(first);

    // A new cluster (its own API server and store, a new controller), the same locations and key.
    let (second, key) = stack_with_s3(&s3).await;

    // `kubectl tsdb verify --location`: what the bucket holds, read back whole, with no TimeseriesDBBackup.
    {
        use backup_controller::destination::locations::{EncryptionSpec, Locations};
        use backup_controller::plugin::{self, InLocation};
        let mut sealed = s3.location("sealed", "cluster-a/sealed", None);
        sealed.encryption = Some(EncryptionSpec { key_file: key, previous_key_files: vec![] });
        let transport = backup_controller::http::transport::Connector::new(Duration::from_secs(10)).unwrap();
        let locations =
            Locations::from_file(LocationsFile { locations: vec![sealed] }, transport.default_transport(), TIMEOUT)
                .unwrap();
        let in_sealed = || Some(InLocation { location: "sealed".into(), path: None });
        let out = plugin::verify(&second.backups(), "vm", None, &locations, in_sealed()).await.unwrap();
        assert!(out.starts_with(&format!("backup {id} of default/vm/vm.")) && out.contains("verified"), "{out}");
        let err = plugin::verify(&second.backups(), "vm", Some("19700101T000000000Z"), &locations, in_sealed()).await;
        assert!(format!("{:#}", err.unwrap_err()).contains("holds no backup 19700101T000000000Z"));
    }
    let target = Victoria::start().await;
    second.create_restore("by-status", restore_spec("vm", VictoriaMetrics, &target.url, None)).await;
    let lost = second.wait_restore("by-status", Phase::Failed, TIMEOUT).await;
    assert!(lost.status.unwrap().message.unwrap().contains("does not exist"), "no TimeseriesDBBackup here");

    let mut spec = restore_spec("vm", VictoriaMetrics, &target.url, None);
    spec.backup_ref.location = Some("sealed".into());
    second.create_restore("from-bucket", spec.clone()).await;
    let restored = second.wait_restore("from-bucket", Phase::Succeeded, TIMEOUT).await;
    assert!(restored.status.unwrap().message.unwrap().contains(&id), "the backup made in the lost cluster");
    assert_same(&target.export().await, &want);

    // Another namespace's restore of the same name reads only its own namespace's files: there are none.
    spec.backup_ref.id = Some(id);
    let other = backup_apis::restore::TimeseriesDBRestore::new("kube-system", "from-bucket", spec);
    let api: kube::Api<backup_apis::restore::TimeseriesDBRestore> =
        kube::Api::namespaced(second.client.clone(), "kube-system");
    api.create(&Default::default(), &other).await.unwrap();
    let refused = wait_for("the other namespace's restore to fail", TIMEOUT, || async {
        let obj = api.get("from-bucket").await.map_err(|e| e.to_string())?;
        let status = obj.status.clone().unwrap_or_default();
        match status.phase {
            Some(Phase::Failed) => Ok(status.message.unwrap_or_default()),
            phase => Err(format!("{phase:?}")),
        }
    })
    .await;
    assert!(refused.contains("holds no backup") && refused.contains("kube-system/vm/"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influx_round_trip_encrypted_then_tampered() {
    let s3 = S3Server::start().await;
    let (stack, _) = stack_with_s3(&s3).await;
    let source = Influx::start().await;
    let (lines, values) = influx_lines(2, 0, 50, 100);
    source.load("metrics", &lines).await;
    let want = source.dump("metrics").await;

    for (name, location) in [("influx-plain", "plain"), ("influx-sealed", "sealed")] {
        stack.create_backup(name, to(location, backup_spec(InfluxDB, &source.url, Some("metrics")))).await;
        let backup = stack.wait_backup(name, Phase::Succeeded, TIMEOUT).await;
        assert_eq!(backup.status.unwrap().last_backup.unwrap().samples, Some(values));
        let target = Influx::start().await;
        let restore = format!("{name}-back");
        stack.create_restore(&restore, restore_spec(name, InfluxDB, &target.url, Some("copy"))).await;
        stack.wait_restore(&restore, Phase::Succeeded, TIMEOUT).await;
        assert!(target.dump("copy").await == want, "InfluxDB points differ after a round trip via {location}");
    }

    // One flipped byte in the encrypted object: the restore fails before writing, and says why.
    let key = s3.objects().into_iter().find(|k| k.contains("/sealed/")).unwrap();
    let path = s3.root.join(BUCKET).join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = 4096 + (bytes.len() - 4096) / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let target = Influx::start().await;
    stack.create_restore("tampered", restore_spec("influx-sealed", InfluxDB, &target.url, Some("copy"))).await;
    let failed = stack.wait_restore("tampered", Phase::Failed, TIMEOUT).await;
    let message = failed.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("corrupt backup"), "{message}");
    let databases = target.query("_internal", "SHOW DATABASES").await.to_string();
    assert!(!databases.contains("\"copy\""), "nothing written: {databases}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_upload_leaves_no_object() {
    let s3 = S3Server::start().await;
    let (mut stack, _) = stack_with_s3(&s3).await;
    let vm = Victoria::start().await;
    // Enough for several 8 MiB parts.
    vm.load(&float_series(5, 2000, 3000, false)).await;
    stack.create_backup("big", to("plain", backup_spec(VictoriaMetrics, &vm.url, None))).await;
    // Killed once the upload has parts in the server (s3s-fs keeps them out of the bucket's keys).
    wait_for("a multipart upload in progress", TIMEOUT, || async {
        let running = stack.backups().get("big").await.map_err(|e| e.to_string())?;
        let phase = running.status.and_then(|s| s.phase);
        match (phase, uploads(&s3)) {
            (Some(Phase::Running), n) if n > 0 => Ok(()),
            (phase, n) => Err(format!("{phase:?}, {n} upload files")),
        }
    })
    .await;
    stack.kill_controller().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(s3.objects().is_empty(), "no object after a killed upload: {:?}", s3.objects());
    // The next controller's run completes a backup: one object.
    stack.start_controller();
    let done = stack.wait_backup("big", Phase::Succeeded, TIMEOUT).await;
    let location = done.status.unwrap().last_backup.unwrap().location.unwrap();
    assert_eq!(s3.objects(), [format!("cluster-a/{location}")]);
}

/// On a server that lists multipart uploads (moto; s3s-fs answers 501), a run aborts the incomplete uploads that
/// crashed runs of the same object left in its directory, and only those: another UID's beside them, the same
/// name's in another namespace and in a directory below stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_run_aborts_its_own_crashed_uploads() {
    use backup_controller::destination::file_name;
    use backup_controller::testing::moto::Moto;

    let moto = Moto::start().await;
    let mut stack = Stack::start().await;
    stack.settings.locations = Some(LocationsFile { locations: vec![moto.location("moto", "cluster-a")] });
    stack.start_controller();
    let vm = Victoria::start().await;
    vm.load(&float_series(9, 10, 100, false)).await;
    let created = stack.create_backup("vm", to("moto", backup_spec(VictoriaMetrics, &vm.url, None))).await;
    let uid = created.metadata.uid.unwrap();
    let first = stack.wait_backup("vm", Phase::Succeeded, TIMEOUT).await;
    let first = first.status.unwrap().last_backup.unwrap().location.unwrap();

    // Uploads as crashed runs leave them (parts sent, never completed nor aborted).
    let connector = backup_controller::http::transport::Connector::new(Duration::from_secs(10)).unwrap();
    let spec = moto.location("moto", "cluster-a").s3.unwrap();
    let store = s3_store(&spec, connector.default_transport(), Duration::from_secs(10)).unwrap().with_part_size(10);
    let id = "20261205T000000000Z";
    let own = format!("default/vm/{}", file_name("vm", &uid, id));
    let other_uid = format!("default/vm/{}", file_name("vm", "0a1b2c3d-7d0e-4d8f-9a51-1f2e3d4c5b6a", id));
    let elsewhere = format!("team-b/vm/{}", file_name("vm", &uid, id));
    // Another object's directory below this one's (`spec.destination.path: vm/deeper`).
    let deeper = format!("default/vm/deeper/{}", file_name("vm", &uid, id));
    for location in [&own, &other_uid, &elsewhere, &deeper] {
        let mut file = store.create(location).await.unwrap();
        file.write(&[7; 30]).await.unwrap();
        std::mem::forget(file); // as a crash: no abort
    }
    let mut both = [own.clone(), other_uid.clone()];
    both.sort();
    assert_eq!(listed(&store, "default/vm", false).await, both);
    assert!(store.open(&own).await.is_err(), "an incomplete upload is no object");

    backup_controller::plugin::backup_now(&stack.backups(), "vm").await.unwrap();
    wait_for("the second backup", TIMEOUT, || async {
        let obj = stack.backups().get("vm").await.map_err(|e| e.to_string())?;
        match obj.status.and_then(|s| s.backups).map(|b| b.len()) {
            Some(2) => Ok(()),
            n => Err(format!("{n:?} backups")),
        }
    })
    .await;
    assert_eq!(listed(&store, "default/vm", false).await, [other_uid], "its own upload aborted, another UID's kept");
    assert_eq!(listed(&store, "team-b/vm", false).await, [elsewhere], "another namespace's kept");
    assert_eq!(listed(&store, "default/vm/deeper", false).await, [deeper], "a deeper directory's kept");
    let committed = listed(&store, "default/vm", true).await;
    assert_eq!(committed.len(), 2, "{committed:?}");
    assert!(committed.contains(&first));
}

/// The files `store` lists under `dir`, committed or not.
async fn listed(store: &ObjectDir, dir: &str, committed: bool) -> Vec<String> {
    let entries = store.list(dir).await.unwrap();
    entries.into_iter().filter(|e| e.committed == committed).map(|e| e.location).collect()
}

/// Files of unfinished multipart uploads in the server's directory (outside the bucket's keys).
fn uploads(s3: &S3Server) -> usize {
    fn count(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| if e.path().is_dir() { count(&e.path()) } else { 1 })
            .sum()
    }
    count(&s3.root) - s3.objects().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_condition_kubectl_tsdb_verify_and_key_rotation() {
    use backup_controller::destination::locations::{EncryptionSpec, Locations};
    use backup_controller::http::transport::Connector;
    use backup_controller::plugin;

    let s3 = S3Server::start().await;
    let (stack, old_key) = stack_with_s3(&s3).await;
    let vm = Victoria::start().await;
    vm.load(&float_series(7, 20, 200, false)).await;
    let spec = TimeseriesDBBackupSpec { verify: true, ..to("sealed", backup_spec(VictoriaMetrics, &vm.url, None)) };
    stack.create_backup("checked", spec).await;
    let done = stack.wait_backup("checked", Phase::Succeeded, TIMEOUT).await;
    let verified = done.status.unwrap().conditions.unwrap().into_iter().find(|c| c.r#type == "Verified").unwrap();
    assert_eq!(verified.reason.as_deref(), Some("BackupVerified"), "{:?}", verified.message);

    // `kubectl tsdb verify` with the operator's locations: the current key, a rotated one, none, a wrong one.
    let new_key = stack.tmp.path().join("new.key");
    std::fs::write(&new_key, [9u8; 32]).unwrap();
    let connector = Connector::new(Duration::from_secs(10)).unwrap();
    let with_keys = |encryption: Option<EncryptionSpec>| {
        let mut location = s3.location("sealed", "cluster-a/sealed", None);
        location.encryption = encryption;
        Locations::from_file(
            LocationsFile { locations: vec![location] },
            connector.default_transport(),
            Duration::from_secs(10),
        )
        .unwrap()
    };
    let api = stack.backups();
    let current = with_keys(Some(EncryptionSpec { key_file: old_key.clone(), previous_key_files: vec![] }));
    let out = plugin::verify(&api, "checked", None, &current, None).await.unwrap();
    assert!(out.contains("verified") && out.contains("encrypted with key"), "{out}");
    let rotated =
        with_keys(Some(EncryptionSpec { key_file: new_key.clone(), previous_key_files: vec![old_key.clone()] }));
    assert!(
        plugin::verify(&api, "checked", None, &rotated, None).await.is_ok(),
        "an old backup read with a previous key"
    );
    let wrong = with_keys(Some(EncryptionSpec { key_file: new_key.clone(), previous_key_files: vec![] }));
    let err = format!("{:#}", plugin::verify(&api, "checked", None, &wrong, None).await.unwrap_err());
    assert!(err.contains("not one of this location's keys") && err.contains("previousKeyFiles"), "{err}");
    let err = format!("{:#}", plugin::verify(&api, "checked", None, &with_keys(None), None).await.unwrap_err());
    assert!(err.contains("has no encryption keys"), "{err}");
    // A flipped byte anywhere (header JSON, header tag, payload) is found.
    let object = s3.root.join(BUCKET).join(s3.objects().into_iter().next().unwrap());
    let pristine = std::fs::read(&object).unwrap();
    let h = pristine.len() - 4096; // the header block, last
    let json_len = u32::from_le_bytes(pristine[h + 8..h + 12].try_into().unwrap()) as usize;
    for at in [h + 20, h + 12 + json_len + 3, h + 12 + json_len + 40, 5, h - 1, 0] {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0x04;
        std::fs::write(&object, &bytes).unwrap();
        let err = plugin::verify(&api, "checked", None, &current, None).await.unwrap_err();
        assert!(
            format!("{err:#}").contains("corrupt backup") || format!("{err:#}").contains("header"),
            "{at}: {err:#}"
        );
    }
}
