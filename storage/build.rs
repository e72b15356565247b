//! Nothing to generate: the build-dependency on protoc-bin-vendored makes cargo fetch the protoc that
//! etcd-client's build script runs through `hack/protoc`.
fn main() {}
