//! Content negotiation (k8s.io/apiserver `negotiation`): which media type and representation an `Accept` header
//! asks for.
//!
//! Clauses are tried in order of `q` (stable); protobuf and CBOR clauses are skipped because JSON is served, so
//! the metadata client's `application/vnd.kubernetes.protobuf;as=…,application/json;as=…` gets the JSON form.

use crate::error::{ApiError, ApiResult};
use crate::request::query::Query;

/// What to send: a representation in a media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub media: Media,
    pub representation: Representation,
}

impl Output {
    /// The object itself, in JSON.
    pub const JSON: Self = Self { media: Media::Json, representation: Representation::Object };
}

/// The media type of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Json,
    /// `application/yaml` (not for watches).
    Yaml,
}

/// What to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    /// The object or list itself.
    Object,
    /// `as=Table`, `meta.k8s.io/<version>`, with what each row carries of its object.
    Table(MetaVersion, IncludeObject),
    /// `as=PartialObjectMetadata` (single objects and watch events).
    PartialObjectMetadata(MetaVersion),
    /// `as=PartialObjectMetadataList`.
    PartialObjectMetadataList(MetaVersion),
}

/// `includeObject` of a Table request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    /// `includeObject` of the query (`metav1.TableOptions`): Metadata by default.
    pub fn from_query(q: &Query) -> ApiResult<Self> {
        match q.get("includeObject") {
            None | Some("" | "Metadata") => Ok(Self::Metadata),
            Some("None") => Ok(Self::None),
            Some("Object") => Ok(Self::Object),
            Some(other) => Err(ApiError::bad_request(format!(
                "includeObject: Unsupported value: {other:?}: supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }
}

/// `meta.k8s.io` version of a transformed representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaVersion {
    V1,
    V1beta1,
}

impl MetaVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            Self::V1 => "meta.k8s.io/v1",
            Self::V1beta1 => "meta.k8s.io/v1beta1",
        }
    }
}

/// The request shape being negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Object,
    List,
    Watch,
}

const ACCEPTED: &[&str] = &["application/json", "application/yaml", "application/json;stream=watch"];

/// One clause of an Accept header.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaRange<'a> {
    pub media_type: &'a str,
    pub params: Vec<(&'a str, &'a str)>,
    pub q: f32,
}

impl MediaRange<'_> {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Split an Accept header into clauses, ordered by `q` (stable).
pub fn parse_accept(accept: &str) -> Vec<MediaRange<'_>> {
    let mut out: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';').map(str::trim);
            let media_type = parts.next().filter(|m| !m.is_empty())?;
            let mut params = Vec::new();
            let mut q = 1.0;
            for p in parts {
                if let Some((k, v)) = p.split_once('=') {
                    let (k, v) = (k.trim(), v.trim().trim_matches('"'));
                    if k.eq_ignore_ascii_case("q") {
                        q = v.parse().unwrap_or(1.0);
                    } else {
                        params.push((k, v));
                    }
                }
            }
            Some(MediaRange { media_type, params, q })
        })
        .collect();
    out.sort_by(|a, b| b.q.partial_cmp(&a.q).unwrap_or(std::cmp::Ordering::Equal));
    out
}

fn is_json(media_type: &str) -> bool {
    matches!(media_type, "application/json" | "application/*" | "*/*")
}

/// Whether a clause can be served: JSON always, YAML except for watch streams (as upstream).
fn servable(media_type: &str, target: Target) -> bool {
    is_json(media_type) || (media_type == "application/yaml" && target != Target::Watch)
}

/// Choose the representation for a resource request (`query` holds the Table options).
pub fn negotiate(accept: Option<&str>, target: Target, query: &Query) -> ApiResult<Output> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::JSON);
    };
    for range in parse_accept(accept) {
        if range.q <= 0.0 || !servable(range.media_type, target) {
            continue;
        }
        let media = if range.media_type == "application/yaml" { Media::Yaml } else { Media::Json };
        let output = |representation| Ok(Output { media, representation });
        let Some(as_kind) = range.param("as") else {
            return output(Representation::Object);
        };
        if range.param("g") != Some("meta.k8s.io") {
            continue;
        }
        let version = match range.param("v") {
            Some("v1") => MetaVersion::V1,
            Some("v1beta1") => MetaVersion::V1beta1,
            _ => continue,
        };
        match (as_kind, target) {
            ("Table", _) => return output(Representation::Table(version, IncludeObject::from_query(query)?)),
            ("PartialObjectMetadata", Target::Object | Target::Watch) => {
                return output(Representation::PartialObjectMetadata(version));
            }
            ("PartialObjectMetadataList", Target::List) => {
                return output(Representation::PartialObjectMetadataList(version));
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let a = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            negotiate(Some(a), Target::List, &Query::default()).map(|o| o.representation),
            Ok(Representation::Table(MetaVersion::V1, IncludeObject::Metadata))
        );
    }

    #[test]
    fn protobuf_first_falls_back_to_json_transform() {
        let a = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        let r = |t| negotiate(Some(a), t, &Query::default()).map(|o| o.representation);
        assert_eq!(r(Target::List), Ok(Representation::PartialObjectMetadataList(MetaVersion::V1)));
        assert_eq!(r(Target::Object), Ok(Representation::Object));
    }

    #[test]
    fn empty_and_wildcards_are_json() {
        assert_eq!(negotiate(None, Target::Object, &Query::default()), Ok(Output::JSON));
        assert_eq!(negotiate(Some("*/*"), Target::Object, &Query::default()), Ok(Output::JSON));
    }

    #[test]
    fn yaml_is_served_except_for_watches() {
        let yaml = Output { media: Media::Yaml, representation: Representation::Object };
        assert_eq!(negotiate(Some("application/yaml"), Target::Object, &Query::default()), Ok(yaml));
        assert_eq!(negotiate(Some("application/yaml"), Target::List, &Query::default()), Ok(yaml));
        assert_eq!(
            negotiate(Some("application/json, application/yaml"), Target::List, &Query::default()),
            Ok(Output::JSON)
        );
        assert_eq!(negotiate(Some("application/yaml"), Target::Watch, &Query::default()).unwrap_err().code, 406);
    }

    #[test]
    fn nothing_acceptable_is_406() {
        let e = negotiate(Some("application/vnd.kubernetes.protobuf"), Target::Object, &Query::default()).unwrap_err();
        assert_eq!(e.code, 406);
        let e = negotiate(
            Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
            Target::Object,
            &Query::default(),
        );
        assert_eq!(e.unwrap_err().code, 406);
    }
}
