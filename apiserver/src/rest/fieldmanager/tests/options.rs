//! fieldManager and force parameters.

use crate::rest::fieldmanager::options::{Verb, parse, prefix_from_user_agent};
use crate::rest::params::Params;

fn p(q: &str) -> Params {
    Params::parse(Some(q))
}

#[test]
fn field_manager_options() {
    let e = parse(&p(""), Verb::Patch { apply: true }, "kubectl/v1.32").unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let e = parse(&p("force=true"), Verb::Patch { apply: false }, "").unwrap_err();
    assert_eq!(
        e.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    assert_eq!(e.details.unwrap()["causes"][0]["field"], "force");
    let long = format!("fieldManager={}", "m".repeat(129));
    assert_eq!(parse(&p(&long), Verb::Create, "").unwrap_err().code, 422);
    assert_eq!(parse(&p("fieldManager=a%07b"), Verb::Update, "").unwrap_err().code, 422);
    assert_eq!(parse(&p("force=maybe"), Verb::Patch { apply: true }, "").unwrap_err().code, 400);
    let ok = parse(&p("fieldManager=me&force=true"), Verb::Patch { apply: true }, "").unwrap();
    assert_eq!((ok.manager.as_str(), ok.force), ("me", true));
    assert_eq!(parse(&p(""), Verb::Create, "kubectl/v1.32.4 (linux/amd64)").unwrap().manager, "kubectl");
    assert_eq!(prefix_from_user_agent(&"x".repeat(200)).len(), 128);
}
