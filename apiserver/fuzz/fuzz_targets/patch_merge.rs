#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = backup_apiserver::fuzzing::run("patch_merge", data) {
        panic!("patch_merge: {e}");
    }
});
