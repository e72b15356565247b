//! Names in the OpenAPI documents, computed as kube-apiserver computes them: definition names
//! (`io.extend-k8s.backup.v1.TimeseriesDBBackup`), operation IDs
//! (`createBackupExtendK8sIoV1NamespacedTimeseriesDBBackup`), tags (`backupExtendK8sIo_v1`) and operation
//! descriptions (`create a TimeseriesDBBackup`).
//!
//! Sources: `apiserver/pkg/endpoints/openapi/openapi.go` (`GetOperationIDAndTags`, `ToValidOperationID`),
//! `apiserver/pkg/endpoints/installer.go` (operation names and docs, `GetArticleForNoun`) and
//! `apiextensions-apiserver/pkg/apiserver/.../util.ToRESTFriendlyName` (a CRD's definition name: the group reversed).

/// `io.extend-k8s.backup.v1.TimeseriesDBBackup`: the group's dotted labels reversed, then version and kind, as
/// kube-apiserver names CRD definitions.
pub(super) fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// kube-openapi's `ToValidOperationID`: keeps letters, `_` and (not first) digits; any other character drops out
/// and capitalizes the next kept one. `capitalize_first` capitalizes the first kept character too.
pub(super) fn to_valid_operation_id(s: &str, capitalize_first: bool) -> String {
    let mut out = String::with_capacity(s.len());
    let mut capitalize = capitalize_first;
    for (i, c) in s.char_indices() {
        if c.is_alphabetic() || c == '_' || (i != 0 && c.is_numeric()) {
            if capitalize {
                out.extend(c.to_uppercase());
                capitalize = false;
            } else {
                out.push(c);
            }
        } else {
            capitalize = true;
        }
    }
    out
}

/// The group as it appears in operation IDs and tags: `.k8s.io` is trimmed (not `-k8s.io`).
fn trimmed_group(group: &str) -> &str {
    group.strip_suffix(".k8s.io").unwrap_or(group)
}

/// `createBackupExtendK8sIoV1NamespacedTimeseriesDBBackup` from verb `create` and rest
/// `NamespacedTimeseriesDBBackup`.
pub(super) fn operation_id(verb: &str, group: &str, version: &str, rest: &str) -> String {
    format!(
        "{verb}{}{}{}",
        to_valid_operation_id(trimmed_group(group), true),
        to_valid_operation_id(version, true),
        to_valid_operation_id(rest, true)
    )
}

/// `backupExtendK8sIo_v1`.
pub(super) fn tag(group: &str, version: &str) -> String {
    format!("{}_{}", to_valid_operation_id(trimmed_group(group), false), to_valid_operation_id(version, false))
}

/// installer.go's `GetArticleForNoun(noun, " ")`: ` a `, ` an `, or ` ` for a plural.
pub(super) fn article(noun: &str) -> &'static str {
    if noun.ends_with('s') && !noun.ends_with("ss") {
        return " ";
    }
    match noun.chars().next().map(|c| c.to_ascii_lowercase()) {
        Some('a' | 'e' | 'i' | 'o' | 'u') => " an ",
        _ => " a ",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream() {
        assert_eq!(
            definition_name("backup.extend-k8s.io", "v1", "TimeseriesDBBackup"),
            "io.extend-k8s.backup.v1.TimeseriesDBBackup"
        );
        assert_eq!(to_valid_operation_id("backup.extend-k8s.io", true), "BackupExtendK8sIo");
        assert_eq!(tag("backup.extend-k8s.io", "v1"), "backupExtendK8sIo_v1");
        assert_eq!(tag("apiregistration.k8s.io", "v1"), "apiregistration_v1");
        assert_eq!(
            operation_id("create", "backup.extend-k8s.io", "v1", "NamespacedTimeseriesDBBackup"),
            "createBackupExtendK8sIoV1NamespacedTimeseriesDBBackup"
        );
        assert_eq!(
            operation_id("delete", "apiregistration.k8s.io", "v1", "collectionAPIService"),
            "deleteApiregistrationV1CollectionAPIService"
        );
        assert_eq!(article("TimeseriesDBBackup"), " a ");
        assert_eq!(article("APIService"), " an ");
        assert_eq!(article("Endpoints"), " ");
    }
}
