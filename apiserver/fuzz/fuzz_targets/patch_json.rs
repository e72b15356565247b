#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = backup_apiserver::fuzzing::run("patch_json", data) {
        panic!("patch_json: {e}");
    }
});
