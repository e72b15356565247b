#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(e) = backup_apiserver::fuzzing::run("patch_apply", data) {
        panic!("patch_apply: {e}");
    }
});
