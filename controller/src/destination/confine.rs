//! Tenant confinement: the place of an object's backups in a location is computed from its namespace, name and UID
//! alone, `<namespace>/<path or name>/<name>.<uid>.<id>.tsdb` ([`Prefix`]), and every location read from status
//! (`status.backups[].location`, which namespace admins can write) is checked against it before the controller
//! deletes or restores it ([`Prefix::check`]).
//!
//! API → controller → **confinement (this file)** → destination.
//!
//! A checked location lies under the object's namespace and names the object and its UID: nothing in spec or status
//! makes the controller read, list or delete outside `<namespace>/` or touch another object's files. (Backups made
//! before a spec edit moved `spec.destination.path`, and those of controllers before confinement, whose default
//! path was `<namespace>/<name>`, stay restorable and expirable: they are under `<namespace>/` with the UID.)

use super::{Entry, file_name, parse_file_name};

/// A backup file found by name in a location, without its TimeseriesDBBackup's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    pub id: String,
    /// The UID in the file's name: of the TimeseriesDBBackup that wrote it, perhaps one that no longer exists.
    pub uid: String,
    pub location: String,
}

/// The directory a TimeseriesDBBackup `name` of `namespace` writes to, `<namespace>/<path or name>`, checked as
/// [`Prefix::new`] checks it: where its files are looked for when its status is gone.
pub fn search_dir(namespace: &str, name: &str, path: Option<&str>) -> Result<String, String> {
    // The UID is not needed for the directory; any valid one passes the check.
    Prefix::new(namespace, name, "-", path.unwrap_or(name)).map(|p| p.dir)
}

/// Why [`find_file`] found nothing in `dir` of `location`.
pub fn not_found(location: &str, namespace: &str, name: &str, dir: &str, id: Option<&str>) -> String {
    let which = id.map_or_else(|| "no backup".to_string(), |id| format!("no backup {id}"));
    format!("location {location} holds {which} of a TimeseriesDBBackup {namespace}/{name} in {dir}/")
}

/// Among `entries` (a listing of `<namespace>/<path>/`), the newest committed backup file of a TimeseriesDBBackup
/// named `name`, whatever its UID, or the one with `id`. Files without a UID in their name (written before UIDs
/// were) are not taken: the confinement check needs one.
pub fn find_file(entries: &[Entry], name: &str, id: Option<&str>) -> Option<FoundFile> {
    let files = entries.iter().filter(|e| e.committed).filter_map(|e| {
        let file = parse_file_name(e.location.rsplit('/').next()?)?;
        let uid = file.uid.filter(|_| file.name == name)?;
        Some((file.id.to_string(), uid.to_string(), e.location.clone()))
    });
    let (id, uid, location) = files.filter(|(file_id, ..)| id.is_none_or(|id| id == file_id)).max()?;
    Some(FoundFile { id, uid, location })
}

/// Where one TimeseriesDBBackup's files live in its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    namespace: String,
    name: String,
    uid: String,
    /// `<namespace>/<path or name>`: the directory new backups are written to and leftovers are looked for in.
    dir: String,
}

impl Prefix {
    /// The prefix of `namespace/name` (UID `uid`) with the (server-normalised) `spec.destination.path`, or its
    /// default, the name. Refuses what the server would not have stored (an absolute path, `..`, an empty part).
    pub fn new(namespace: &str, name: &str, uid: &str, path: &str) -> Result<Self, String> {
        for (what, part) in [("namespace", namespace), ("name", name), ("uid", uid)] {
            if part.is_empty() || part.contains('/') || part == "." || part == ".." {
                return Err(format!("the object's {what} {part:?} cannot name a directory"));
            }
        }
        if path.is_empty() || path.split('/').any(|p| p.is_empty() || p == "." || p == ".." || p.contains('\\')) {
            return Err(format!(
                "spec.destination.path {path:?} is not a relative path without '..' (the server refuses it)"
            ));
        }
        Ok(Self { namespace: namespace.into(), name: name.into(), uid: uid.into(), dir: format!("{namespace}/{path}") })
    }

    /// The directory new backups go to, relative to the location's root.
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The location of backup `id`.
    pub fn location(&self, id: &str) -> String {
        format!("{}/{}", self.dir, file_name(&self.name, &self.uid, id))
    }

    /// Whether `file` (a name under [`Prefix::dir`], from a listing) is one of this object's files.
    pub fn owns_file(&self, file: &str) -> bool {
        parse_file_name(file).is_some_and(|f| f.name == self.name && f.uid == Some(self.uid.as_str()))
    }

    /// Whether `location` is a file of a controller from before UIDs were recorded, `<namespace>/…/<name>.<id>.tsdb`
    /// (never deleted: it cannot be told from an earlier object's of the same name).
    pub fn is_legacy(&self, location: &str, id: &str) -> bool {
        let file = location.rsplit('/').next().unwrap_or_default();
        location.starts_with(&format!("{}/", self.namespace))
            && parse_file_name(file).is_some_and(|f| f.name == self.name && f.uid.is_none() && f.id == id)
    }

    /// Checks a location read from status for backup `id`: under `<namespace>/`, without `.`/`..` or empty parts,
    /// and named `<name>.<uid>.<id>.tsdb` with this object's name and UID. The error says what is wrong, for a
    /// Failed condition.
    pub fn check(&self, location: &str, id: &str) -> Result<(), String> {
        let refuse = |why: &str| {
            Err(format!(
                "status location {location:?} of backup {id} is {why}: only {}/…/{} is this object's; nothing was \
                 read or deleted there (was status edited?)",
                self.namespace,
                file_name(&self.name, &self.uid, id)
            ))
        };
        let Some(rest) = location.strip_prefix(&format!("{}/", self.namespace)) else {
            return refuse("outside this namespace's prefix");
        };
        if rest.split('/').any(|p| p.is_empty() || p == "." || p == ".." || p.contains('\\')) {
            return refuse("not a plain relative path");
        }
        let file = rest.rsplit('/').next().unwrap_or_default();
        match parse_file_name(file) {
            Some(f) if f.name == self.name && f.uid == Some(self.uid.as_str()) && f.id == id => Ok(()),
            _ => refuse("another object's file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f1c0a52-7d0e-4d8f-9a51-1f2e3d4c5b6a";
    const OTHER: &str = "0a1b2c3d-7d0e-4d8f-9a51-1f2e3d4c5b6a";

    #[test]
    fn locations_are_under_the_namespace() {
        let p = Prefix::new("team-b", "prod", UID, "team-a/prod").unwrap();
        assert_eq!(p.dir(), "team-b/team-a/prod");
        assert_eq!(p.location("1"), format!("team-b/team-a/prod/prod.{UID}.1.tsdb"));
        assert!(p.owns_file(&format!("prod.{UID}.1.tsdb")));
        assert!(!p.owns_file(&format!("prod.{OTHER}.1.tsdb")));
        assert!(!p.owns_file("prod.1.tsdb"));
        for bad in ["", "../x", "a/../b", "/abs", "a//b", "./a"] {
            assert!(Prefix::new("ns", "n", UID, bad).is_err(), "{bad}");
        }
        assert!(Prefix::new("", "n", UID, "n").is_err());
        assert!(Prefix::new("ns", "..", UID, "n").is_err());
    }

    #[test]
    fn status_locations_are_checked() {
        let p = Prefix::new("team-b", "prod", UID, "prod").unwrap();
        assert_eq!(p.check(&p.location("7"), "7"), Ok(()));
        // Written before a path change, or by a controller before confinement (path `<namespace>/<name>`).
        assert_eq!(p.check(&format!("team-b/old/prod.{UID}.7.tsdb"), "7"), Ok(()));
        assert_eq!(p.check(&format!("team-b/prod/prod.{UID}.7.tsdb"), "7"), Ok(()));
        for (tampered, why) in [
            (format!("team-a/prod/prod.{UID}.7.tsdb"), "outside this namespace's prefix"),
            (format!("team-b/../team-a/prod/prod.{UID}.7.tsdb"), "not a plain relative path"),
            (format!("/team-b/prod/prod.{UID}.7.tsdb"), "outside this namespace's prefix"),
            (format!("team-b//prod.{UID}.7.tsdb"), "not a plain relative path"),
            (format!("team-b/prod/prod.{OTHER}.7.tsdb"), "another object's file"),
            (format!("team-b/prod/other.{UID}.7.tsdb"), "another object's file"),
            (format!("team-b/prod/prod.{UID}.8.tsdb"), "another object's file"),
            ("team-b/prod/prod.7.tsdb".to_string(), "another object's file"),
            ("team-a/prod/prod.7.tsdb".to_string(), "outside this namespace's prefix"),
            ("team-b/notes.txt".to_string(), "another object's file"),
            ("team-b".to_string(), "outside this namespace's prefix"),
        ] {
            let err = p.check(&tampered, "7").unwrap_err();
            assert!(err.contains(why), "{tampered}: {err}");
        }
        assert!(p.is_legacy("team-b/prod/prod.7.tsdb", "7"));
        assert!(!p.is_legacy("team-a/prod/prod.7.tsdb", "7"));
        assert!(!p.is_legacy(&p.location("7"), "7"));
    }
}
